//! The ranking MLP: `score = relu(relu(x·W1 + b1)·W2 + b2)·W3 + b3` with
//! `x = [user_emb ⊙ item_emb, user_feats, item_feats]` (dim + 2·feat_dim wide: 96 for
//! the workload's schema), computed as three SGEMMs over every candidate row of a
//! micro-batch.

use crate::data::{Schema, H1, H2};
use crate::items::{Items, ItemsView};
use crate::types::Profile;
use anyhow::ensure;

/// MLP weights, row-major, `x @ W` convention.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The sizes its input is assembled from.
    schema: Schema,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    w3: Vec<f32>,
    b3: f32,
}

/// One request's share of a scoring call.
pub struct ScoreInput<'a> {
    /// The user's profile.
    pub profile: &'a Profile,
    /// Candidate item ids.
    pub candidates: &'a [u64],
}

impl Mlp {
    /// Splits `mlp.f32` (W1, b1, W2, b2, W3, b3) into layers, for inputs of `schema`.
    pub fn from_flat(flat: &[f32], schema: Schema) -> anyhow::Result<Self> {
        ensure!(
            flat.len() == schema.mlp_len(),
            "mlp has {} floats, expected {} for {}-d embeddings and {} features",
            flat.len(),
            schema.mlp_len(),
            schema.dim,
            schema.feat_dim
        );
        let mut rest = flat;
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head.to_vec()
        };
        Ok(Self {
            schema,
            w1: take(schema.mlp_in() * H1),
            b1: take(H1),
            w2: take(H1 * H2),
            b2: take(H2),
            w3: take(H2),
            b3: take(1)[0],
        })
    }

    /// Scores every candidate of every input in one pass; returns one score list per
    /// input, in candidate order.
    /// The items' read guard is held while the input matrix is built, not through the
    /// forward pass (an item write waits for it).
    pub fn score_batch(&self, items: &Items, inputs: &[ScoreInput<'_>]) -> Vec<Vec<f32>> {
        let x = self.inputs(&items.view(), inputs);
        let scores = self.forward(&x, x.len() / self.schema.mlp_in());
        split_rows(scores, inputs)
    }

    /// The input matrix (rows × input width) of a scoring call. An item deleted since it
    /// was a candidate gets an all-zero item part (the pipeline drops it from the answer).
    pub fn inputs(&self, items: &ItemsView<'_>, inputs: &[ScoreInput<'_>]) -> Vec<f32> {
        let Schema { dim, feat_dim } = self.schema;
        let width = self.schema.mlp_in();
        let rows: usize = inputs.iter().map(|i| i.candidates.len()).sum();
        let mut x = vec![0f32; rows * width];
        let mut out = x.chunks_exact_mut(width);
        for input in inputs {
            let (emb, feats) = (&input.profile.emb, &input.profile.feats);
            for (&id, row) in input.candidates.iter().zip(&mut out) {
                let (cross, rest) = row.split_at_mut(dim);
                let (user_feats, item_feats) = rest.split_at_mut(feat_dim);
                user_feats.copy_from_slice(feats);
                let Some((item_emb, item_feat)) = items.get(id) else {
                    continue;
                };
                for ((c, u), v) in cross.iter_mut().zip(emb).zip(item_emb) {
                    *c = u * v;
                }
                item_feats.copy_from_slice(item_feat);
            }
        }
        x
    }

    /// Forward pass over `rows` input rows of the input width.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let h1 = dense_relu(x, rows, self.schema.mlp_in(), &self.w1, &self.b1, H1);
        let h2 = dense_relu(&h1, rows, H1, &self.w2, &self.b2, H2);
        let mut s = vec![self.b3; rows];
        sgemm(rows, H2, 1, &h2, &self.w3, &mut s, 1.0);
        s
    }
}

/// Splits one score vector back into per-input lists.
pub fn split_rows(scores: Vec<f32>, inputs: &[ScoreInput<'_>]) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(inputs.len());
    let mut offset = 0;
    for input in inputs {
        let n = input.candidates.len();
        out.push(scores[offset..offset + n].to_vec());
        offset += n;
    }
    out
}

/// `relu(x·W + b)` for x: rows × k, W: k × n.
fn dense_relu(x: &[f32], rows: usize, k: usize, w: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * n);
    for _ in 0..rows {
        out.extend_from_slice(b);
    }
    sgemm(rows, k, n, x, w, &mut out, 1.0);
    out.iter_mut().for_each(|v| *v = v.max(0.0));
    out
}

/// c (m × n) = a (m × k) · b (k × n) + beta · c, all row-major and contiguous.
#[allow(unsafe_code)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32], beta: f32) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the asserts above keep every access of the row-major strides in bounds,
    // and `c` is an exclusive borrow distinct from `a` and `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Top `k` of (id, score) by score descending, ties by smaller id.
pub fn top_k(ids: &[u64], scores: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut pairs: Vec<(u64, f32)> = ids.iter().copied().zip(scores.iter().copied()).collect();
    let by = |a: &(u64, f32), b: &(u64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if pairs.len() > k {
        pairs.select_nth_unstable_by(k, by);
        pairs.truncate(k);
    }
    pairs.sort_unstable_by(by);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::catalogue;

    /// Reference forward pass with plain loops (tests compare the SGEMM path against it).
    fn forward_naive(mlp: &Mlp, x: &[f32], rows: usize) -> Vec<f32> {
        let layer = |inp: &[f32], k: usize, w: &[f32], b: &[f32], n: usize| -> Vec<f32> {
            let mut out = vec![0f32; rows * n];
            for r in 0..rows {
                for j in 0..n {
                    let mut acc = b[j];
                    for t in 0..k {
                        acc += inp[r * k + t] * w[t * n + j];
                    }
                    out[r * n + j] = acc.max(0.0);
                }
            }
            out
        };
        let h1 = layer(x, mlp.schema.mlp_in(), &mlp.w1, &mlp.b1, H1);
        let h2 = layer(&h1, H1, &mlp.w2, &mlp.b2, H2);
        (0..rows)
            .map(|r| mlp.b3 + (0..H2).map(|t| h2[r * H2 + t] * mlp.w3[t]).sum::<f32>())
            .collect()
    }

    #[test]
    fn sgemm_path_matches_naive_loops() {
        let (_d, cat) = catalogue(500);
        let mlp = Mlp::from_flat(&cat.mlp, cat.schema).unwrap();
        let rows = 37;
        let x: Vec<f32> = (0..rows * cat.schema.mlp_in())
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let fast = mlp.forward(&x, rows);
        let slow = forward_naive(&mlp, &x, rows);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn batch_scoring_equals_per_request_scoring() {
        let (_d, cat) = catalogue(500);
        let mlp = Mlp::from_flat(&cat.mlp, cat.schema).unwrap();
        let src = crate::features::profile::ProfileSource::new(&cat);
        let (p1, p2) = (src.profile("u1"), src.profile("u2"));
        let items = crate::items::Items::new(std::sync::Arc::new(cat));
        let (c1, c2): (Vec<u64>, Vec<u64>) = ((0..50).collect(), (100..130).collect());
        let both = mlp.score_batch(
            &items,
            &[
                ScoreInput {
                    profile: &p1,
                    candidates: &c1,
                },
                ScoreInput {
                    profile: &p2,
                    candidates: &c2,
                },
            ],
        );
        let one = mlp.score_batch(
            &items,
            &[ScoreInput {
                profile: &p2,
                candidates: &c2,
            }],
        );
        assert_eq!(both[1], one[0]);
        assert_eq!(both[0].len(), 50);
    }

    #[test]
    fn top_k_breaks_ties_by_id() {
        let top = top_k(&[9, 3, 5, 1], &[0.5, 0.9, 0.9, 0.1], 3);
        assert_eq!(top, vec![(3, 0.9), (5, 0.9), (9, 0.5)]);
    }

    #[test]
    fn wrong_weight_count_is_an_error() {
        assert!(Mlp::from_flat(&[0.0; 10], Schema::WORKLOAD).is_err());
    }
}
