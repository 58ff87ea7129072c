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
    let traced = encode_traced(&search(), 0x0af7651916cd43dd8448eb211c80319c).unwrap();
    assert_eq!(
        decode_traced::<Search>(&traced).unwrap(),
        (search(), 0x0af7651916cd43dd8448eb211c80319c)
    );
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
    // version, trace, lane, deadline, k, then a vector length of 2^60 elements
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    bytes.extend_from_slice(&7u128.to_le_bytes());
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

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes at all: an error or a message, never a panic.
        #[test]
        fn any_bytes_decode_to_an_error_or_a_message(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Search>(&bytes);
        }

        /// Behind a valid version and trace, so the body decoder sees arbitrary bytes:
        /// whatever lengths they claim, decoding stays within the frame limit (a claim
        /// past it is refused, not allocated).
        #[test]
        fn any_body_behind_a_valid_header_is_refused_or_read(
            trace in any::<u128>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let bytes = [&PROTOCOL_VERSION.to_le_bytes()[..], &trace.to_le_bytes(), &body].concat();
            if let Ok((m, t)) = decode_traced::<Search>(&bytes) {
                prop_assert_eq!(t, trace);
                prop_assert!(m.queries.len() * 4 <= bytes.len());
            }
        }

        /// A valid message with any one byte changed or cut short never panics, and an
        /// unchanged one reads back exactly.
        #[test]
        fn mutated_messages_never_panic(at in any::<prop::sample::Index>(), to in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let bytes = encode_traced(&search(), 42).unwrap();
            let mut mutated = bytes.clone();
            mutated[at.index(bytes.len())] = to;
            let _ = decode_traced::<Search>(&mutated);
            let _ = decode_traced::<Search>(&bytes[..cut.index(bytes.len())]);
            prop_assert_eq!(decode_traced::<Search>(&bytes).unwrap(), (search(), 42));
        }
    }
}
