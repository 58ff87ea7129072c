use super::*;
use crate::features::profile::ProfileSource;
use crate::test_data::catalogue;

fn workload_model(cat: &crate::data::Catalogue) -> Model {
    Model::native(
        "ranker",
        0,
        &ModelConfig::workload_mlp(),
        &cat.mlp,
        cat.schema,
    )
    .unwrap()
}

#[test]
fn the_workload_rows_are_cross_then_user_then_item_features() {
    let (_d, cat) = catalogue(300);
    let model = workload_model(&cat);
    let src = ProfileSource::new(&cat);
    let p = src.profile("u7");
    let (emb, feats) = (cat.item(5).to_vec(), cat.item_feat(5).to_vec());
    let items = Items::new(Arc::new(cat));
    let x = model.assemble(
        &items.view(),
        &[ScoreInput {
            profile: &p,
            candidates: &[5],
        }],
    );
    assert_eq!(x.len(), 96);
    for d in 0..64 {
        assert_eq!(x[d], p.emb[d] * emb[d]);
    }
    assert_eq!(&x[64..80], &p.feats[..]);
    assert_eq!(&x[80..96], &feats[..]);
}

#[test]
fn blocks_are_assembled_in_config_order() {
    let (_d, cat) = catalogue(300);
    let schema = cat.schema;
    let config = ModelConfig {
        format: Format::Native,
        file: None,
        inputs: vec![Block::Dot, Block::ItemEmb, Block::UserEmb],
        output: None,
        hidden: vec![4],
        fixed_rows: None,
    };
    let width = config.width(schema).unwrap();
    let flat = vec![0.01; super::super::native::floats_for(width, &[4])];
    let model = Model::native("m", 1, &config, &flat, schema).unwrap();
    let src = ProfileSource::new(&cat);
    let p = src.profile("u3");
    let item = cat.item(9).to_vec();
    let items = Items::new(Arc::new(cat));
    let x = model.assemble(
        &items.view(),
        &[ScoreInput {
            profile: &p,
            candidates: &[9, 10_000],
        }],
    );
    assert_eq!(x.len(), 2 * width);
    assert!((x[0] - dot(&p.emb, &item)).abs() < 1e-6);
    assert_eq!(&x[1..65], &item[..]);
    assert_eq!(&x[65..129], &p.emb[..]);
    // an unknown item: item blocks zero, user blocks kept
    assert!(x[width..width + 65].iter().all(|&v| v == 0.0));
    assert_eq!(&x[width + 65..], &p.emb[..]);
    assert_eq!(model.label().as_ref(), "m@1");
}

#[test]
fn batch_scoring_equals_per_request_scoring() {
    let (_d, cat) = catalogue(500);
    let model = workload_model(&cat);
    let src = ProfileSource::new(&cat);
    let (p1, p2) = (src.profile("u1"), src.profile("u2"));
    let items = Items::new(Arc::new(cat));
    let (c1, c2): (Vec<u64>, Vec<u64>) = ((0..50).collect(), (100..130).collect());
    let input = |p, c| ScoreInput {
        profile: p,
        candidates: c,
    };
    let both = model
        .score_batch(&items, &[input(&p1, &c1), input(&p2, &c2)])
        .unwrap();
    let one = model.score_batch(&items, &[input(&p2, &c2)]).unwrap();
    assert_eq!(both[1], one[0]);
    assert_eq!(both[0].len(), 50);
    assert!(model.warm_up(&items).is_ok());
}

#[test]
fn a_model_answering_nan_is_refused_at_warm_up() {
    let (_d, cat) = catalogue(300);
    let config = ModelConfig {
        hidden: vec![8, 8],
        ..ModelConfig::workload_mlp()
    };
    // finite weights whose products overflow: inf − inf in the output layer is NaN
    let n = super::super::native::floats_for(96, &[8, 8]);
    let flat: Vec<f32> = (0..n)
        .map(|i| if i % 2 == 0 { 3e38 } else { -3e38 })
        .collect();
    let model = Model::native("big", 2, &config, &flat, cat.schema).unwrap();
    let items = Items::new(Arc::new(cat));
    let err = model.warm_up(&items).unwrap_err();
    assert!(format!("{err:#}").contains("non-finite"), "{err:#}");
}

#[test]
fn top_k_breaks_ties_by_id() {
    let top = top_k(&[9, 3, 5, 1], &[0.5, 0.9, 0.9, 0.1], 3);
    assert_eq!(top, vec![(3, 0.9), (5, 0.9), (9, 0.5)]);
}
