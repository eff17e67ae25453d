//! The verbs on a host with an executor that runs nothing itself: the test plays the
//! workers (reports attempts started and finished), so every verb is checked without a
//! nats-server or a process, for the coordinator and local mode alike.

use std::collections::BTreeSet;

use ordo_proto::api::{
    ErrorKind, JobsRequest, OutputRequest, PruneRequest, ReportRequest, RetryRequest,
    StatusRequest, SubmitRequest, WorkerInfo,
};
use ordo_proto::{
    Dispatch, Integrate, JobId, JobSpec, JobState, Kill, Outcome, TaskPhase, TaskResult, names,
};

use super::api::{ReplyLimit, handle};
use super::*;
use crate::engine::{ANY_QUEUE, Capacity};

/// An executor that keeps what it is asked to do, for the test to play out.
#[derive(Default)]
struct Playback {
    started: Vec<Dispatch>,
    killed: Vec<Kill>,
    pruned: Vec<JobId>,
    outlive: bool,
}

impl Executor for Playback {
    fn attempts_outlive_host(&self) -> bool {
        self.outlive
    }
    async fn open_queues(&mut self, _: &BTreeSet<String>) -> Result<(), String> {
        Ok(())
    }
    fn slots(&mut self, _: &BTreeSet<String>, _: &JobSpec, _: Option<u32>) -> u32 {
        4
    }
    fn capacity(&mut self) -> Vec<(String, Capacity)> {
        vec![(ANY_QUEUE.into(), Capacity::machine(4, 4.0, 1 << 20))]
    }
    fn start(&mut self, d: Dispatch, _: Option<u64>) {
        self.started.push(d);
    }
    async fn kill(&mut self, k: Kill) {
        self.killed.push(k);
    }
    fn integrate(&mut self, _: Integrate) {}
    async fn prune(&mut self, job: &JobRecord) {
        self.pruned.push(job.id);
    }
    fn workers(&self) -> Vec<WorkerInfo> {
        Vec::new()
    }
}

fn host(store: Arc<Store>) -> Host<Playback> {
    let mut host = Host::new(
        store,
        Policy::LOCAL_DURABLE,
        Playback::default(),
        Traces::new(None),
    );
    host.refresh_capacity(1);
    host
}

fn spec(tasks: &[(&str, &str, &[&str])]) -> JobSpec {
    let mut toml = String::from("name = \"j\"\n[settings]\nexecution_mode = \"parallel\"\n");
    toml.push_str("pools = { p = 1 }\n");
    for (name, pool, deps) in tasks {
        toml.push_str(&format!(
            "[[tasks]]\nname = \"{name}\"\ncommand = \"true\"\ndepends_on = {deps:?}\n"
        ));
        if !pool.is_empty() {
            toml.push_str(&format!("pool = \"{pool}\"\n"));
        }
    }
    toml::from_str(&toml).unwrap()
}

fn request(spec: JobSpec) -> SubmitRequest {
    SubmitRequest {
        spec,
        source: "test.toml".into(),
        default_mode: None,
        max_parallel: None,
    }
}

/// Commits and hands out what is due; the attempts started since the last call.
async fn turn(host: &mut Host<Playback>, now: Millis) -> Vec<Dispatch> {
    host.turn(now, true).await.unwrap();
    std::mem::take(&mut host.executor_mut().started)
}

/// Plays a worker: the attempt started and ended as `outcome`, with `output`.
fn finish(host: &mut Host<Playback>, d: &Dispatch, outcome: Outcome, output: &str, now: Millis) {
    host.apply(
        now,
        Event::Started {
            job: d.job,
            index: d.index,
            attempt: d.attempt,
            worker: "w".into(),
            delivery: 1,
        },
    );
    let mut r = TaskResult::new(d, "w".into(), outcome, now, "");
    r.exit_code = Some(if outcome == Outcome::Succeeded { 0 } else { 1 });
    r.output_tail = output.into();
    r.output_bytes = output.len() as u64;
    host.apply(now + 1, Event::Finished(r));
}

/// A request by name, as a transport hands it over: its `ApiReply` as JSON.
async fn ask(host: &mut Host<Playback>, now: Millis, verb: &str, body: &[u8]) -> serde_json::Value {
    let reply = handle(host, now, verb, body, ReplyLimit(usize::MAX)).await;
    serde_json::from_slice(&reply).unwrap()
}

fn phases(host: &mut Host<Playback>, job: JobId) -> Vec<(String, TaskPhase)> {
    let status = host.status(&StatusRequest::whole(job)).unwrap();
    status
        .tasks
        .iter()
        .map(|t| (t.name.to_string(), t.state))
        .collect()
}

#[tokio::test]
async fn submit_runs_a_job_whose_status_report_output_and_listing_agree() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store);
    let job = host
        .submit(10, request(spec(&[("a", "", &[]), ("b", "", &["a"])])))
        .await
        .unwrap()
        .job;
    let first = turn(&mut host, 11).await;
    assert_eq!(first.len(), 1, "b waits for a");
    finish(&mut host, &first[0], Outcome::Succeeded, "hello from a", 12);
    let second = turn(&mut host, 13).await;
    assert_eq!(second[0].task.as_str(), "b");
    finish(&mut host, &second[0], Outcome::Succeeded, "b done", 14);
    turn(&mut host, 15).await;
    assert!(host.settled());
    let status = host.status(&StatusRequest::whole(job)).unwrap();
    assert_eq!(status.summary.state, JobState::Succeeded);
    assert_eq!(status.summary.succeeded, 2);
    let listed = host.jobs(&JobsRequest::default()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, job);
    let report = host.report(&ReportRequest { job: None }).unwrap();
    assert_eq!(report.job.summary.id, job, "the newest job by default");
    assert_eq!(report.attempts.len(), 2);
    let out = host
        .output(&OutputRequest {
            job,
            task: None,
            keep: 4,
        })
        .unwrap();
    assert_eq!(out.tasks.len(), 2);
    assert_eq!(out.tasks[0].tail, "om a", "the last `keep` bytes");
    assert_eq!(out.tasks[0].bytes, 12);
}

/// A result applied and not yet committed (it may wait to share a commit) is committed before
/// `status`, `report` or `output` reads the store: a task shown ended has its attempt's record.
#[tokio::test]
async fn reads_see_every_result_applied_so_far() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store);
    let job = host
        .submit(10, request(spec(&[("a", "", &[])])))
        .await
        .unwrap()
        .job;
    let first = turn(&mut host, 11).await;
    finish(&mut host, &first[0], Outcome::Succeeded, "hello from a", 12);
    assert!(!host.settled(), "the result waits for a commit");
    let body = serde_json::to_vec(&StatusRequest::whole(job)).unwrap();
    let reply = ask(&mut host, 13, ordo_proto::api::STATUS, &body).await;
    let a = &reply["ok"]["tasks"][0];
    assert_eq!(a["state"], "succeeded", "{reply}");
    assert_eq!(a["worker"], "w", "{reply}");
    assert_eq!(a["exit_code"], 0, "{reply}");
    assert!(host.settled());
}

#[tokio::test]
async fn bad_submissions_are_refused_naming_the_file_and_job_and_record_nothing() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store.clone()).with_limits(Limits { max_tasks: 1 });
    let e = host
        .submit(1, request(spec(&[("a", "", &[]), ("b", "", &[])])))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(
        e.message.starts_with("test.toml (job 'j'): 2 tasks;"),
        "{}",
        e.message
    );
    let mut host = self::host(store.clone());
    let mut worktree = spec(&[("a", "", &[])]);
    worktree.settings.workspace = Some(ordo_proto::WorkspaceMode::Worktree);
    let e = host.submit(1, request(worktree)).await.unwrap_err();
    assert!(e.message.contains("settings.repository"), "{}", e.message);
    let cyclic = spec(&[("a", "", &["b"]), ("b", "", &["a"])]);
    let e = host.submit(1, request(cyclic)).await.unwrap_err();
    assert!(e.message.starts_with("j: "), "{}", e.message);
    assert!(store.jobs().unwrap().is_empty(), "nothing recorded");
}

/// One pool of size 1 is one pool for every job of the host.
#[tokio::test]
async fn a_pool_is_shared_by_every_job_of_the_host() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store);
    let one = host.submit(1, request(spec(&[("a", "p", &[])]))).await;
    let two = host.submit(1, request(spec(&[("a", "p", &[])]))).await;
    let (one, two) = (one.unwrap().job, two.unwrap().job);
    let started = turn(&mut host, 2).await;
    assert_eq!(started.len(), 1, "the pool holds one run at a time");
    finish(&mut host, &started[0], Outcome::Succeeded, "", 3);
    let next = turn(&mut host, 4).await;
    assert_eq!(next.len(), 1);
    assert_ne!(next[0].job, started[0].job, "then the other job's task");
    finish(&mut host, &next[0], Outcome::Succeeded, "", 5);
    turn(&mut host, 6).await;
    for job in [one, two] {
        assert_eq!(
            phases(&mut host, job),
            vec![("a".into(), TaskPhase::Succeeded)]
        );
    }
}

#[tokio::test]
async fn cancel_kills_the_running_attempts_and_ends_the_job() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store);
    let job = host
        .submit(1, request(spec(&[("a", "", &[]), ("b", "", &["a"])])))
        .await
        .unwrap()
        .job;
    let started = turn(&mut host, 2).await;
    host.cancel(3, job).unwrap();
    turn(&mut host, 4).await;
    let killed = &host.executor().killed;
    assert!(
        killed
            .iter()
            .any(|k| k.job == job && k.index == Some(started[0].index)),
        "{killed:?}"
    );
    finish(&mut host, &started[0], Outcome::Cancelled, "", 5);
    turn(&mut host, 6).await;
    let summary = host.status(&StatusRequest::whole(job)).unwrap().summary;
    assert_eq!(summary.state, JobState::Cancelled);
    let e = host
        .cancel(7, JobId::new())
        .expect_err("an unknown job is not found");
    assert_eq!(e.kind, ErrorKind::NotFound);
}

/// Retry of the failed tasks runs only them (what succeeded keeps its one attempt), with the
/// new budget recorded; a job still running cannot be retried.
#[tokio::test]
async fn retry_runs_only_what_did_not_succeed_with_its_new_budget() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store.clone());
    let job = host
        .submit(1, request(spec(&[("a", "", &[]), ("b", "", &[])])))
        .await
        .unwrap()
        .job;
    let started = turn(&mut host, 2).await;
    let refused = host.retry(3, &RetryRequest::failed_only(job)).unwrap_err();
    assert!(
        refused.message.contains("is still running"),
        "{}",
        refused.message
    );
    for d in &started {
        let outcome = match d.task.as_str() {
            "a" => Outcome::Succeeded,
            _ => Outcome::Failed,
        };
        finish(&mut host, d, outcome, "", 4);
    }
    turn(&mut host, 5).await;
    let summary = host.status(&StatusRequest::whole(job)).unwrap().summary;
    assert_eq!(summary.state, JobState::Failed);
    let mut req = RetryRequest::failed_only(job);
    req.max_cost_usd = Some(2.5);
    let summary = host.retry(6, &req).unwrap();
    assert_eq!((summary.state, summary.retries), (JobState::Running, 1));
    let again = turn(&mut host, 7).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].task.as_str(), "b");
    finish(&mut host, &again[0], Outcome::Succeeded, "", 8);
    turn(&mut host, 9).await;
    let saved = store.tasks(&job).unwrap();
    assert_eq!(saved[0].attempts, 1, "a kept its one attempt");
    assert_eq!(
        host.status(&StatusRequest::whole(job))
            .unwrap()
            .summary
            .state,
        JobState::Succeeded
    );
    let rec = store.job(&job).unwrap().unwrap();
    assert_eq!(rec.spec.settings.max_cost_usd, Some(2.5));
}

#[tokio::test]
async fn prune_removes_what_finished_jobs_kept_and_never_a_running_one() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store.clone());
    let job = host
        .submit(1, request(spec(&[("a", "", &[])])))
        .await
        .unwrap()
        .job;
    let started = turn(&mut host, 2).await;
    let one = PruneRequest {
        older_than_ms: 0,
        job: Some(job),
    };
    let e = host.prune(3, &one).await.unwrap_err();
    assert!(e.message.contains("has not finished"), "{}", e.message);
    finish(&mut host, &started[0], Outcome::Succeeded, "", 4);
    turn(&mut host, 5).await;
    assert_eq!(host.prune(6, &one).await.unwrap().removed, 0);
    assert_eq!(
        host.executor().pruned,
        vec![job],
        "its worktrees, not its records"
    );
    assert!(store.job(&job).unwrap().is_some());
    let all = PruneRequest {
        older_than_ms: 0,
        job: None,
    };
    assert_eq!(
        host.prune(names::MAX_TASKS as u64, &all)
            .await
            .unwrap()
            .removed,
        1
    );
    assert!(store.job(&job).unwrap().is_none());
    assert_eq!(host.executor().pruned, vec![job, job]);
}

/// A restarted host whose attempts died with it runs them again; one whose attempts run
/// elsewhere waits for their results.
#[tokio::test]
async fn recover_reruns_attempts_that_died_with_the_host_only() {
    for outlive in [false, true] {
        let store = Arc::new(Store::in_memory().unwrap());
        let mut first = host(store.clone());
        let job = first
            .submit(1, request(spec(&[("a", "", &[])])))
            .await
            .unwrap()
            .job;
        let started = turn(&mut first, 2).await;
        first.apply(
            3,
            Event::Started {
                job,
                index: started[0].index,
                attempt: started[0].attempt,
                worker: "w".into(),
                delivery: 1,
            },
        );
        turn(&mut first, 4).await;
        drop(first);
        let mut second = host(store.clone());
        second.executor_mut().outlive = outlive;
        second.recover(5, Recover::All).await.unwrap();
        let again = turn(&mut second, 6).await;
        assert_eq!(again.is_empty(), outlive, "outlive = {outlive}");
    }
}

/// The verbs by name, as every transport sends them.
#[tokio::test]
async fn verbs_by_name_answer_api_replies() {
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store);
    let body = serde_json::to_vec(&request(spec(&[("a", "", &[])]))).unwrap();
    let v = ask(&mut host, 1, "submit", &body).await;
    assert!(v["ok"]["job"].is_string(), "{v}");
    let v = ask(&mut host, 1, "nope", b"{}").await;
    assert_eq!(v["error"]["message"], "unknown API verb 'nope'");
    let v = ask(&mut host, 1, "status", b"{").await;
    assert_eq!(v["error"]["kind"], "invalid");
}

/// A job with a `[[notify]]` hook: the failed task's and the job's notifications are in the
/// store as soon as the commit of the failure is (the same transaction), a delivery that
/// fails (nobody listens) is recorded by the next commit and shows in the job's summary, and
/// the job's end never waited for it.
#[tokio::test]
async fn notifications_are_committed_with_their_change_and_failures_show_in_status() {
    use ordo_proto::gates::{NotifyEvent, NotifySpec};
    let store = Arc::new(Store::in_memory().unwrap());
    let mut host = host(store.clone());
    // A port nobody listens on: the delivery fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let mut s = spec(&[("a", "", &[])]);
    s.notify = vec![NotifySpec {
        events: vec![NotifyEvent::TaskFailed, NotifyEvent::JobEnded],
        url,
        ..NotifySpec::default()
    }];
    let job = host.submit(10, request(s)).await.unwrap().job;
    let started = turn(&mut host, 11).await;
    assert!(store.notices().unwrap().is_empty());
    finish(&mut host, &started[0], Outcome::Failed, "boom", 12);
    turn(&mut host, 13).await;
    assert_eq!(store.job(&job).unwrap().unwrap().state, JobState::Failed);
    let events: Vec<&str> = store
        .notices()
        .unwrap()
        .iter()
        .map(|n| n.event.name())
        .collect();
    assert_eq!(events, ["task_failed", "job_ended"]);
    let waker = host.notify_waker();
    let recorded = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(h) = store.notify_health(&job).unwrap()
                && h.failures >= 2
            {
                return h;
            }
            waker.notified().await;
            host.turn(ordo_proto::now_ms(), false).await.unwrap();
        }
    })
    .await
    .expect("the failed deliveries are recorded");
    assert!(recorded.last_error.unwrap().contains("cannot connect"));
    let notices = store.notices().unwrap();
    assert!(notices.iter().all(|n| n.attempts == 1), "kept for a retry");
    let summary = &host.jobs(&JobsRequest::default()).unwrap()[0];
    assert_eq!(summary.notify.as_ref().map(|n| n.failures), Some(2));
}
