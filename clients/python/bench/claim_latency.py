"""The seed's ``claim_task`` from Python, timed: one client claiming distinct
tasks one after another against a running ``ifc serve``.

Run by ``ifc-bench`` (the "Through HTTP" section) beside the Rust client on the
same server; prints one JSON object of microsecond percentiles on stdout.

    python claim_latency.py --server URL --token ADMIN_TOKEN --count N
"""

import argparse
import asyncio
import json
import statistics
import time

from ifc_client import IFCoordinator


def percentile(sorted_us, q):
    index = min(len(sorted_us) - 1, max(0, round(q * len(sorted_us)) - 1))
    return sorted_us[index]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--prefix", default="py-bench")
    args = parser.parse_args()
    # Claims are not renewed here: only the claim itself is measured.
    async with IFCoordinator(server=args.server, token=args.token, renew_claims=False) as c:
        swarm = f"{args.prefix}-claimer"
        await c.register_swarm(swarm, [], {})
        ids = [f"{args.prefix}-{i}" for i in range(args.count)]
        for task_id in ids:
            await c.create_task({"task_id": task_id, "task_type": "bench", "metadata": {}})
        for task_id in ids[:20]:  # warm the connection pool and the interpreter
            await c.client.get_task(task_id)
        times = []
        for task_id in ids:
            started = time.perf_counter()
            won = await c.claim_task(swarm, task_id)
            times.append((time.perf_counter() - started) * 1e6)
            if not won:
                raise SystemExit(f"claim of {task_id} was not won")
        await c.unregister_swarm(swarm)
    times.sort()
    print(json.dumps({
        "count": len(times),
        "p50": percentile(times, 0.50),
        "p95": percentile(times, 0.95),
        "p99": percentile(times, 0.99),
        "max": times[-1],
        "mean": statistics.fmean(times),
    }))


if __name__ == "__main__":
    asyncio.run(main())
