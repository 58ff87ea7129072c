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

/// A pool `name` of 3 workers from `factory`, `max_restarts` per minute, 1 ms backoff.
fn args<F: WorkerFactory>(name: &'static str, factory: F, max_restarts: u32) -> PoolArgs<F> {
    PoolArgs {
        name,
        factory,
        slots: PoolSlots::new(3),
        policy: RestartPolicy {
            max_restarts,
            window: Duration::from_secs(60),
            backoff: Duration::from_millis(1),
        },
        metrics: Arc::new(Metrics::new()),
        health: root::Health::new(),
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
    let args = args("flaky", FlakyFactory, max_restarts);
    let (slots, metrics) = (Arc::clone(&args.slots), Arc::clone(&args.metrics));
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

/// A worker whose `post_stop` takes a while and then counts itself.
struct Slow(Arc<std::sync::atomic::AtomicUsize>);

impl Actor for Slow {
    type Msg = FlakyMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<FlakyMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<FlakyMsg>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

struct SlowFactory(Arc<std::sync::atomic::AtomicUsize>);

impl WorkerFactory for SlowFactory {
    type Worker = Slow;
    fn make(&self, _: usize) -> (Slow, ()) {
        (Slow(Arc::clone(&self.0)), ())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_pool_has_waited_for_each_workers_own_stop() {
    let stopped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let args = args("slow", SlowFactory(Arc::clone(&stopped)), 1);
    let (sup, _) = Actor::spawn(None, PoolSupervisor::<SlowFactory>::default(), args)
        .await
        .unwrap();
    sup.stop_and_wait(None, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    // every worker ran its post_stop (an HTTP drain, a store flush) before the pool was gone
    assert_eq!(stopped.load(std::sync::atomic::Ordering::SeqCst), 3);
}
