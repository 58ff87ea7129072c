//! recd's native dense format: `relu(… relu(x·W1 + b1) …)·Wout + bout`, each layer one
//! SGEMM (matrixmultiply) over every row of a scoring call. The catalogue's `mlp.f32`
//! is this format with hidden layers 128 and 64.

use anyhow::ensure;

/// One dense layer, row-major, `x @ W` convention.
#[derive(Debug, Clone)]
struct Layer {
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// A dense network with ReLU hidden layers and one linear output.
#[derive(Debug, Clone)]
pub struct Dense {
    layers: Vec<Layer>,
}

/// Floats in a native file for an input `width` and `hidden` widths.
pub fn floats_for(width: usize, hidden: &[usize]) -> usize {
    let mut prev = width;
    let mut n = 0;
    for &h in hidden.iter().chain([1].iter()) {
        n += prev * h + h;
        prev = h;
    }
    n
}

impl Dense {
    /// Splits the file's floats (W then b, per layer, the output layer last).
    pub fn from_flat(flat: &[f32], width: usize, hidden: &[usize]) -> anyhow::Result<Self> {
        let want = floats_for(width, hidden);
        ensure!(
            flat.len() == want,
            "weights hold {} floats, a {width}-wide input through hidden {hidden:?} takes {want}",
            flat.len()
        );
        let mut rest = flat;
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut prev = width;
        for &h in hidden.iter().chain([1].iter()) {
            let (w, tail) = rest.split_at(prev * h);
            let (b, tail) = tail.split_at(h);
            rest = tail;
            layers.push(Layer {
                w: w.to_vec(),
                b: b.to_vec(),
                inputs: prev,
                outputs: h,
            });
            prev = h;
        }
        Ok(Self { layers })
    }

    /// Forward pass over `rows` input rows: one score per row.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let last = self.layers.len() - 1;
        let mut act = x.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            let mut out = Vec::with_capacity(rows * l.outputs);
            for _ in 0..rows {
                out.extend_from_slice(&l.b);
            }
            sgemm(rows, l.inputs, l.outputs, &act, &l.w, &mut out);
            if i < last {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            act = out;
        }
        act
    }

    /// The same pass with plain loops (the reference the SGEMM path is tested against).
    #[cfg(test)]
    pub fn forward_naive(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let last = self.layers.len() - 1;
        let mut act = x.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            let mut out = vec![0f32; rows * l.outputs];
            for r in 0..rows {
                for j in 0..l.outputs {
                    let mut acc = l.b[j];
                    for t in 0..l.inputs {
                        acc += act[r * l.inputs + t] * l.w[t * l.outputs + j];
                    }
                    out[r * l.outputs + j] = if i < last { acc.max(0.0) } else { acc };
                }
            }
            act = out;
        }
        act
    }
}

/// c (m × n) += a (m × k) · b (k × n), all row-major and contiguous.
#[allow(unsafe_code)]
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
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
            1.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_path_matches_naive_loops() {
        for hidden in [vec![128, 64], vec![16], vec![]] {
            let width = 37;
            let n = floats_for(width, &hidden);
            let flat: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 5000.0 - 0.1)
                .collect();
            let net = Dense::from_flat(&flat, width, &hidden).unwrap();
            let rows = 29;
            let x: Vec<f32> = (0..rows * width)
                .map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let (fast, slow) = (net.forward(&x, rows), net.forward_naive(&x, rows));
            assert_eq!(fast.len(), rows);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn wrong_weight_count_is_an_error() {
        assert!(Dense::from_flat(&[0.0; 10], 96, &[128, 64]).is_err());
        assert_eq!(
            floats_for(96, &[128, 64]),
            crate::data::Schema::WORKLOAD.mlp_len()
        );
    }
}
