//! The wire forms round-trip, and what a peer sends is checked before it is believed.

use super::*;
use crate::data::Schema;
use recd_runtime::ErrorCode;
const DIM: usize = Schema::WORKLOAD.dim;
const FEAT_DIM: usize = Schema::WORKLOAD.feat_dim;
use recd_runtime::protocol::codec::{decode, encode};

#[test]
fn requests_round_trip_and_garbage_is_an_error() {
    let r = Request::Search {
        shard: 3,
        queries: vec![0.5; DIM * 2],
        k: 100,
        ef: 200,
        lane: 1,
        budget_us: 40_000,
    };
    let bytes = encode(&r).unwrap();
    assert_eq!(decode::<Request>(&bytes).unwrap(), r);
    assert!(decode::<Request>(&bytes[..bytes.len() - 3]).is_err());
    assert!(decode::<Request>(b"\x01\x00\xff\xff\xff\xff").is_err());
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 99;
    assert!(decode::<Request>(&wrong_version).is_err());
}

#[test]
fn a_profile_with_the_wrong_shape_is_refused() {
    let ok = WireProfile {
        emb: vec![0.1; DIM],
        feats: vec![0.2; FEAT_DIM],
        known: true,
        recent: vec![],
    };
    assert!(ok.clone().into_profile(Schema::WORKLOAD).is_ok());
    let short = WireProfile {
        emb: vec![0.1; DIM - 1],
        ..ok.clone()
    };
    assert!(short.into_profile(Schema::WORKLOAD).is_err());
    let nan = WireProfile {
        feats: vec![f32::NAN; FEAT_DIM],
        ..ok
    };
    assert!(nan.into_profile(Schema::WORKLOAD).is_err());
}

#[test]
fn a_peer_reply_is_checked_before_it_is_believed() {
    let code = |r: Reply| {
        r.into_answer(100, Schema::WORKLOAD)
            .map(|_| ())
            .map_err(|e| e.code)
    };
    let ok = Reply::Candidates(vec![vec![(3, 0.5), (99, 0.7)]]);
    assert_eq!(code(ok), Ok(()));
    let outside = Reply::Candidates(vec![vec![(3, 0.5), (100, 0.7)]]);
    assert_eq!(
        code(outside),
        Err(ErrorCode::Internal),
        "id past the catalogue"
    );
    let nan = Reply::Candidates(vec![vec![(3, f32::NAN)]]);
    assert_eq!(code(nan), Err(ErrorCode::Internal));
    assert_eq!(
        code(Reply::Scores(
            vec![vec![1.0, f32::INFINITY]],
            "ranker@1".into()
        )),
        Err(ErrorCode::Internal)
    );
    assert_eq!(
        code(Reply::Scores(vec![vec![1.0]], "ranker@1".into())),
        Ok(())
    );
    let long = format!("{}@1", "m".repeat(90));
    for label in ["ranker", "", "../x@1", "a@1>b@1>c@1", "a@1>b", &long] {
        let r = Reply::Scores(vec![vec![1.0]], label.into());
        assert_eq!(code(r), Err(ErrorCode::Internal), "label {label:?}");
    }
    assert_eq!(
        code(Reply::Pong),
        Err(ErrorCode::Internal),
        "a pong is no answer to a call"
    );
    let short = WireProfile {
        emb: vec![0.1; DIM - 1],
        feats: vec![0.0; FEAT_DIM],
        known: true,
        recent: vec![],
    };
    assert_eq!(
        code(Reply::Profiles(vec![None, Some(short)])),
        Err(ErrorCode::Internal)
    );
    // error replies keep their code; an unknown code is internal (transient)
    let refused = Reply::error("bad_request", "no");
    assert_eq!(code(refused), Err(ErrorCode::BadRequest));
    assert_eq!(code(Reply::error("weird", "?")), Err(ErrorCode::Internal));
    // before the catalogue is known every candidate is refused
    let early = Reply::Candidates(vec![vec![(0, 0.5)]]).into_answer(0, Schema::WORKLOAD);
    assert!(early.is_err());
}
