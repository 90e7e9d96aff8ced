# The seed's "Complete Workflow Example", unchanged but for the two import
# lines and the connection line. The server and admin token come from
# IFC_SERVER / IFC_TOKEN (or ./ifc-data/admin.token next to a local server).
import asyncio
from ifc_client import EventBus
from ifc_client import IFCoordinator

async def main():
    # 1. Initialize
    bus = await EventBus().connect()
    coordinator = IFCoordinator(bus)

    # 2. Register swarms with task callbacks
    swarm1_tasks = []

    async def swarm1_task_handler(task):
        swarm1_tasks.append(task)
        print(f"Swarm 1 received task: {task['task_id']}")

    await coordinator.register_swarm(
        'swarm-1',
        ['code-analysis:python'],
        task_callback=swarm1_task_handler
    )

    await coordinator.register_swarm(
        'swarm-2',
        ['code-analysis:rust']
    )

    # 3. Create tasks
    await coordinator.create_task({
        'task_id': 'review-pr-123',
        'task_type': 'code-review',
        'metadata': {'language': 'python'}
    })

    # 4. Swarm 1 attempts to claim
    if await coordinator.claim_task('swarm-1', 'review-pr-123'):
        print("Swarm 1 claimed task!")

        # Perform work...
        result = {'status': 'approved', 'issues': 0}

        # Complete task
        await coordinator.complete_task('swarm-1', 'review-pr-123', result)
        print("Task completed!")

    # 5. Swarm 2 attempts to claim (should fail - already claimed)
    if not await coordinator.claim_task('swarm-2', 'review-pr-123'):
        print("Swarm 2: Task already claimed")

    # 6. Real-time task push
    await coordinator.push_task_to_swarm(
        'swarm-1',
        {
            'task_id': 'urgent-review',
            'task_type': 'code-review',
            'metadata': {'urgent': True}
        }
    )

    # Wait for push delivery
    await asyncio.sleep(0.1)
    print(f"Swarm 1 received {len(swarm1_tasks)} pushed tasks")

    # 7. Detect blocker
    await coordinator.detect_blocker(
        'swarm-1',
        {
            'type': 'missing_tool',
            'description': 'Rust compiler not found',
            'severity': 'high',
            'required_capabilities': ['infra:package-management']
        }
    )
    print("Blocker reported to orchestrator")

    # 8. Cleanup
    await coordinator.unregister_swarm('swarm-1')
    await coordinator.unregister_swarm('swarm-2')
    await bus.disconnect()

if __name__ == '__main__':
    asyncio.run(main())
