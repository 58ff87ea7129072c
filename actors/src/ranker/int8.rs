//! An int8 variant of the ranking MLP: W1 and W2 quantised per output column, each
//! layer's input per row, i8 × i8 products accumulated in i32, then rescaled. The last
//! 64 → 1 layer stays f32. Measured against the f32 SGEMM path by `bench-kernel`.

use super::model::Mlp;
use crate::data::{H1, H2, MLP_IN};

/// Quantised weights of the first two layers, plus the f32 head.
pub struct Int8Mlp {
    w1: Vec<i8>,
    s1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<i8>,
    s2: Vec<f32>,
    b2: Vec<f32>,
    w3: Vec<f32>,
    b3: f32,
}

fn quantise_columns(w: &[f32], k: usize, n: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; n];
    for t in 0..k {
        for j in 0..n {
            scales[j] = scales[j].max(w[t * n + j].abs());
        }
    }
    scales
        .iter_mut()
        .for_each(|s| *s = if *s > 0.0 { *s / 127.0 } else { 1.0 });
    let q = (0..k * n)
        .map(|i| (w[i] / scales[i % n]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

impl Int8Mlp {
    /// Quantises an f32 model.
    pub fn from_mlp(m: &Mlp) -> Self {
        let (w1, s1) = quantise_columns(&m.w1, MLP_IN, H1);
        let (w2, s2) = quantise_columns(&m.w2, H1, H2);
        Self {
            w1,
            s1,
            b1: m.b1.clone(),
            w2,
            s2,
            b2: m.b2.clone(),
            w3: m.w3.clone(),
            b3: m.b3,
        }
    }

    /// Forward pass over `rows` rows of width 96.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let h1 = layer(x, rows, MLP_IN, &self.w1, &self.s1, &self.b1, H1);
        let h2 = layer(&h1, rows, H1, &self.w2, &self.s2, &self.b2, H2);
        (0..rows)
            .map(|r| {
                self.b3
                    + h2[r * H2..(r + 1) * H2]
                        .iter()
                        .zip(&self.w3)
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
            })
            .collect()
    }
}

fn layer(x: &[f32], rows: usize, k: usize, w: &[i8], ws: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * n];
    let mut xq = vec![0i8; k];
    let mut acc = vec![0i32; n];
    for r in 0..rows {
        let row = &x[r * k..(r + 1) * k];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let xs = if max > 0.0 { max / 127.0 } else { 1.0 };
        for (q, v) in xq.iter_mut().zip(row) {
            *q = (v / xs).round() as i8;
        }
        acc.iter_mut().for_each(|a| *a = 0);
        for (t, &q) in xq.iter().enumerate() {
            if q == 0 {
                continue;
            }
            let q = q as i32;
            for (a, &wv) in acc.iter_mut().zip(&w[t * n..(t + 1) * n]) {
                *a += q * wv as i32;
            }
        }
        for j in 0..n {
            out[r * n + j] = (acc[j] as f32 * xs * ws[j] + b[j]).max(0.0);
        }
    }
    out
}
