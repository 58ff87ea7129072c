use super::*;
use crate::test_util::wait_until;

struct Flaky;

enum FlakyMsg {
    Ping(ractor::RpcReplyPort<usize>),
    Crash,
}

impl ractor::Message for FlakyMsg {}

impl Actor for Flaky {
    type Msg = FlakyMsg;
    type State = usize;
    type Arguments = usize;

    async fn pre_start(
        &self,
        _: ActorRef<FlakyMsg>,
        slot: usize,
    ) -> Result<usize, ActorProcessingErr> {
        Ok(slot)
    }

    async fn handle(
        &self,
        _: ActorRef<FlakyMsg>,
        msg: FlakyMsg,
        slot: &mut usize,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FlakyMsg::Ping(reply) => {
                let _ = reply.send(*slot);
            }
            FlakyMsg::Crash => panic!("injected"),
        }
        Ok(())
    }
}

struct FlakyFactory;

impl WorkerFactory for FlakyFactory {
    type Worker = Flaky;
    fn make(&self, slot: usize) -> (Flaky, usize) {
        (Flaky, slot)
    }
}

async fn start(
    max_restarts: u32,
) -> (
    Arc<PoolSlots<FlakyMsg>>,
    Arc<Metrics>,
    ActorRef<PoolMessage>,
    Arc<root::Health>,
) {
    let slots = PoolSlots::new(3);
    let metrics = Arc::new(Metrics::new());
    let args = PoolArgs {
        name: "flaky",
        factory: FlakyFactory,
        slots: Arc::clone(&slots),
        policy: RestartPolicy {
            max_restarts,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(1),
        },
        metrics: Arc::clone(&metrics),
        health: root::Health::new(),
    };
    let health = Arc::clone(&args.health);
    let (sup, _) = Actor::spawn(None, PoolSupervisor::<FlakyFactory>::default(), args)
        .await
        .unwrap();
    (slots, metrics, sup, health)
}

#[tokio::test]
async fn panicking_worker_is_restarted_in_its_slot() {
    let (slots, metrics, sup, health) = start(5).await;
    assert_eq!(slots.live(), 3);
    let before = slots.get(1).unwrap().get_id();
    slots.get(1).unwrap().cast(FlakyMsg::Crash).unwrap();
    wait_until(|| slots.get(1).is_some_and(|a| a.get_id() != before)).await;
    let answer = ractor::call!(slots.get(1).unwrap(), FlakyMsg::Ping).unwrap();
    assert_eq!(answer, 1);
    assert_eq!(
        metrics.actor_restarts.with_label_values(&["flaky"]).get(),
        1
    );
    assert_eq!(
        health.failure(),
        None,
        "a restart within the budget is no failure"
    );
    sup.stop(None);
    wait_until(|| slots.live() == 0).await;
}

#[tokio::test]
async fn restart_intensity_leaves_slot_empty() {
    let (slots, metrics, sup, health) = start(2).await;
    for _ in 0..2 {
        let id = slots.get(0).unwrap().get_id();
        slots.get(0).unwrap().cast(FlakyMsg::Crash).unwrap();
        wait_until(|| slots.get(0).is_some_and(|a| a.get_id() != id)).await;
    }
    slots.get(0).unwrap().cast(FlakyMsg::Crash).unwrap();
    wait_until(|| slots.get(0).is_none()).await;
    assert_eq!(slots.live(), 2);
    assert_eq!(
        metrics.actor_restarts.with_label_values(&["flaky"]).get(),
        2
    );
    // routing skips the empty slot, and the node says it is no longer whole
    assert!(slots.pick(0).is_some());
    let why = health.failure().expect("the node is unhealthy");
    assert!(why.starts_with("pool flaky slot 0 failed 3 times"), "{why}");
    sup.stop(None);
}
