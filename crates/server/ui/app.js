// The dashboard shell: login, navigation by URL fragment, the live stream.
import { token, get, ApiError } from "./api.js";
import * as live from "./live.js";
import { overview } from "./overview.js";
import { tasks } from "./tasks.js";
import { task } from "./task.js";
import { blockers } from "./blockers.js";
import { dead } from "./dead.js";

const $ = (id) => document.getElementById(id);
let leave = null;
let generation = 0;

function flash(message, ok = false) {
  const el = $("flash");
  el.textContent = message;
  el.className = ok ? "flash ok" : "flash";
  el.hidden = !message;
}

function showLogin(message) {
  live.stop();
  generation += 1;
  if (typeof leave === "function") leave();
  leave = null;
  for (const id of ["nav", "stream", "logout"]) $(id).hidden = true;
  $("view").replaceChildren();
  $("login").hidden = false;
  if (message) flash(message);
  $("token").focus();
}

async function route() {
  if (!token.get()) return showLogin();
  if (typeof leave === "function") leave();
  leave = null;
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = new URLSearchParams(query ?? "");
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] ?? "overview";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.id === `nav-${page === "task" ? "tasks" : page}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  // Each visit renders into its own element: a page still loading when the
  // next one opens draws into a detached element, never over its successor.
  const view = document.createElement("div");
  $("view").replaceChildren(view);
  const mine = ++generation;
  const context = { live, flash, params, id: decodeURIComponent(parts.slice(1).join("/")) };
  const pages = { overview, tasks, task, blockers, dead };
  const render = pages[page] ?? overview;
  document.title = `IF.coordinator · ${page}`;
  try {
    const left = await render(view, context);
    if (mine === generation) leave = left;
    else if (typeof left === "function") left();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return showLogin("That token is not accepted: log in again.");
    flash(e.message);
  }
}

async function login(event) {
  event.preventDefault();
  const input = $("token");
  token.set(input.value.trim());
  input.value = "";
  try {
    await get("/v1/queues");
  } catch (e) {
    token.clear();
    return showLogin(e.status === 401 ? "That token is not accepted." : e.message);
  }
  flash("");
  enter();
}

function enter() {
  $("login").hidden = true;
  for (const id of ["nav", "logout"]) $(id).hidden = false;
  live.start($("stream"));
  route();
}

$("login").addEventListener("submit", login);
$("logout").addEventListener("click", () => { token.clear(); flash(""); showLogin(); });
window.addEventListener("hashchange", () => { flash(""); route(); });
if (token.get()) enter(); else showLogin();
