use super::*;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Search {
    lane: u8,
    deadline_us: u64,
    k: u32,
    queries: Vec<f32>,
}

fn search() -> Search {
    Search {
        lane: 1,
        deadline_us: 123_456,
        k: 100,
        queries: (0..128).map(|i| i as f32 / 7.0).collect(),
    }
}

#[test]
fn round_trip() {
    let bytes = encode(&search()).unwrap();
    assert_eq!(decode::<Search>(&bytes).unwrap(), search());
}

#[test]
fn other_versions_are_refused() {
    let mut bytes = encode(&search()).unwrap();
    bytes[0] = bytes[0].wrapping_add(1); // version is the first field, little endian
    assert_eq!(
        decode::<Search>(&bytes),
        Err(CodecError::Version {
            got: PROTOCOL_VERSION + 1
        })
    );
}

#[test]
fn garbage_truncation_and_trailing_bytes_are_errors_not_panics() {
    let bytes = encode(&search()).unwrap();
    assert!(matches!(
        decode::<Search>(&bytes[..bytes.len() - 3]),
        Err(CodecError::Malformed(_))
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        decode::<Search>(&longer),
        Err(CodecError::Malformed(_))
    ));
    let mut state = 0x1234_5678u64;
    for len in [0, 1, 2, 7, 64, 1000] {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 33) as u8
            })
            .collect();
        assert!(decode::<Search>(&junk).is_err(), "{len} random bytes");
        // behind a valid version, so the body decoder sees the junk too
        let versioned = [&PROTOCOL_VERSION.to_le_bytes()[..], &junk].concat();
        assert!(
            decode::<Search>(&versioned).is_err(),
            "{len} random bytes, versioned"
        );
    }
}

#[test]
fn a_huge_claimed_length_does_not_allocate() {
    // version 1, lane, deadline, k, then a vector length of 2^60 elements
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    bytes.push(1);
    bytes.extend_from_slice(&5u64.to_le_bytes());
    bytes.extend_from_slice(&10u32.to_le_bytes());
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(decode::<Search>(&bytes).is_err());
}

#[test]
fn oversized_messages_are_refused_before_sending() {
    let big = Search {
        queries: vec![0.0; MAX_FRAME / 4 + 1],
        ..search()
    };
    assert!(matches!(encode(&big), Err(CodecError::TooLarge { .. })));
}
