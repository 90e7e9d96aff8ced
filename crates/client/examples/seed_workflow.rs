//! The seed's "Complete Workflow Example", against a live server.
//!
//! Start a server (`cargo run -p ifc -- serve`), then:
//! `cargo run -p ifc-client --example seed_workflow`
//! (it reads the admin token from `./ifc-data/admin.token`, or `IFC_TOKEN`;
//! the server from `IFC_SERVER`, default `http://127.0.0.1:7400`).

use ifc_client::{ClaimOutcome, Client, NewTask};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("IFC_SERVER").unwrap_or_else(|_| "http://127.0.0.1:7400".into());
    let token = match std::env::var("IFC_TOKEN") {
        Ok(token) => token,
        Err(_) => std::fs::read_to_string("ifc-data/admin.token")
            .map_err(|e| {
                format!(
                    "no IFC_TOKEN and no ifc-data/admin.token ({e}); start `ifc serve` here first"
                )
            })?
            .trim()
            .to_string(),
    };
    // 1. Initialize
    let coordinator = Client::new(&server, &token);

    // 2. Register swarms (the swarm clients heartbeat in the background)
    let swarm1 =
        coordinator.register_swarm("swarm-1", &["code-analysis:python"], json!({})).await?;
    let swarm2 = coordinator.register_swarm("swarm-2", &["code-analysis:rust"], json!({})).await?;

    // 3. Create tasks
    coordinator
        .create_task(NewTask {
            task_id: "review-pr-123".into(),
            task_type: "code-review".into(),
            metadata: json!({"language": "python"}),
            required_capabilities: vec![],
            priority: 0,
            max_attempts: None,
            timeout_ms: None,
        })
        .await?;

    // 4. Swarm 1 attempts to claim
    if let ClaimOutcome::Claimed(claim) = swarm1.claim_task("review-pr-123").await? {
        println!("Swarm 1 claimed task! (fencing token {})", claim.token);
        // Perform work...
        let result = json!({"status": "approved", "issues": 0});
        // Complete task
        swarm1.complete_task("review-pr-123", claim.token, result).await?;
        println!("Task completed!");
    }

    // 5. Swarm 2 attempts to claim (should fail - already claimed)
    if !matches!(swarm2.claim_task("review-pr-123").await?, ClaimOutcome::Claimed(_)) {
        println!("Swarm 2: Task already claimed");
    }
    println!("Owner: {}", coordinator.get_task_owner("review-pr-123").await?.unwrap_or_default());

    // 6. Every step is in the witness log, and the log verifies.
    let verification = coordinator.verify_witness().await?;
    println!("Witness log verifies: {}", verification.ok);

    // 7. Cleanup
    swarm1.unregister().await?;
    swarm2.unregister().await?;
    Ok(())
}
