//! Labelled datasets for `kiln train`: CSV and `.npy` files, the spiral
//! generator, seeded shuffling and batches.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use kiln_ir::Tensor;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Samples with integer class labels, features stored row-major as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub x: Vec<f32>,
    /// Features per sample.
    pub features: usize,
    pub labels: Vec<usize>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// One more than the largest label.
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |m| m + 1)
    }

    /// The samples `idx`, as a tensor of shape `[idx.len()] ++ sample_dims`
    /// (whose product must be `features`), with their labels.
    pub fn gather(&self, idx: &[usize], sample_dims: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        let per: usize = sample_dims.iter().product();
        if per != self.features {
            bail!(
                "the model takes samples of shape {sample_dims:?} ({per} values) but the data has {} features",
                self.features
            );
        }
        let mut x = Vec::with_capacity(idx.len() * per);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.x[i * per..(i + 1) * per]);
            y.push(self.labels[i]);
        }
        let mut dims = vec![idx.len()];
        dims.extend_from_slice(sample_dims);
        Ok((Tensor::f32(&dims, x), y))
    }

    /// The first `n` samples and the rest.
    pub fn split_at(&self, n: usize) -> (Dataset, Dataset) {
        let n = n.min(self.len());
        let f = self.features;
        (
            Dataset {
                x: self.x[..n * f].to_vec(),
                features: f,
                labels: self.labels[..n].to_vec(),
            },
            Dataset {
                x: self.x[n * f..].to_vec(),
                features: f,
                labels: self.labels[n..].to_vec(),
            },
        )
    }

    /// CSV text: one sample per line, the label in column `label_col`
    /// (negative counts from the end; -1 is the last). A first line that
    /// does not parse as numbers is a header.
    pub fn from_csv(text: &str, label_col: i64, origin: &str) -> Result<Dataset> {
        let mut x = Vec::new();
        let mut labels = Vec::new();
        let mut features = None;
        for (ln, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let nums: Result<Vec<f64>, _> = cells.iter().map(|c| c.parse::<f64>()).collect();
            let nums = match nums {
                Ok(v) => v,
                Err(_) if features.is_none() && labels.is_empty() && ln == 0 => continue,
                Err(_) => {
                    let (col, bad) = cells
                        .iter()
                        .enumerate()
                        .find(|(_, c)| c.parse::<f64>().is_err())
                        .map(|(i, c)| (i + 1, *c))
                        .unwrap_or((0, ""));
                    bail!("{origin}:{}: column {col}: `{bad}` is not a number", ln + 1);
                }
            };
            let n = nums.len();
            if n < 2 {
                bail!("{origin}:{}: a row needs features and a label", ln + 1);
            }
            let lc = if label_col < 0 {
                n as i64 + label_col
            } else {
                label_col
            };
            if lc < 0 || lc >= n as i64 {
                bail!(
                    "{origin}:{}: label column {label_col} is outside the row's {n} columns",
                    ln + 1
                );
            }
            let lc = lc as usize;
            match features {
                None => features = Some(n - 1),
                Some(f) if f != n - 1 => bail!(
                    "{origin}:{}: {n} columns, but earlier rows have {}",
                    ln + 1,
                    f + 1
                ),
                _ => {}
            }
            let l = nums[lc];
            if l < 0.0 || l.fract() != 0.0 || l > u32::MAX as f64 {
                bail!(
                    "{origin}:{}: the label `{}` is not a class index (a non-negative integer)",
                    ln + 1,
                    cells[lc]
                );
            }
            labels.push(l as usize);
            x.extend(
                nums.iter()
                    .enumerate()
                    .filter(|&(i, _)| i != lc)
                    .map(|(_, &v)| v as f32),
            );
        }
        let features = features.ok_or_else(|| anyhow!("{origin}: no data rows"))?;
        Ok(Dataset {
            x,
            features,
            labels,
        })
    }

    pub fn load_csv(path: &Path, label_col: i64) -> Result<Dataset> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Dataset::from_csv(&text, label_col, &path.display().to_string())
    }

    /// `x.npy` (`[N, ...]`, any numeric dtype) and `y.npy` (`[N]`, integer
    /// class indices).
    pub fn load_npy(x: &Path, y: &Path) -> Result<Dataset> {
        let xt = crate::npy::read(x).map_err(|e| anyhow!(e))?;
        let yt = crate::npy::read(y).map_err(|e| anyhow!(e))?;
        let n = xt.shape().first().copied().unwrap_or(0);
        if xt.shape().len() < 2 || n == 0 {
            bail!(
                "{}: the data must be [samples, features...], found shape {:?}",
                x.display(),
                xt.shape()
            );
        }
        if yt.shape() != [n] {
            bail!(
                "{}: the labels must be [{n}] (one per sample of {}), found shape {:?}",
                y.display(),
                x.display(),
                yt.shape()
            );
        }
        if yt.dtype().is_float() || yt.dtype() == kiln_ir::DType::Bool {
            bail!(
                "{}: labels must be integers, found {}",
                y.display(),
                yt.dtype()
            );
        }
        let mut labels = Vec::with_capacity(n);
        for (i, &l) in yt.to_i64().iter().enumerate() {
            if l < 0 {
                bail!("{}: label {i} is {l}, not a class index", y.display());
            }
            labels.push(l as usize);
        }
        let xs: Vec<f32> = xt.to_f64().iter().map(|&v| v as f32).collect();
        Ok(Dataset {
            features: xs.len() / n,
            x: xs,
            labels,
        })
    }

    /// The CSV text of this dataset (features, then the label), which
    /// [`Dataset::from_csv`] reads back exactly.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        for (i, &l) in self.labels.iter().enumerate() {
            for v in &self.x[i * self.features..(i + 1) * self.features] {
                s += &format!("{v},");
            }
            s += &format!("{l}\n");
        }
        s
    }
}

/// The spiral dataset of the CS231n notes: `classes` arms of `per_class`
/// points each in 2-D, radius growing linearly along each arm and angle
/// `[4j, 4(j+1)]` plus Gaussian noise of standard deviation 0.2, from a seed.
pub fn spiral(per_class: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(per_class * classes * 2);
    let mut labels = Vec::with_capacity(per_class * classes);
    let denom = per_class.saturating_sub(1).max(1) as f64;
    for j in 0..classes {
        for i in 0..per_class {
            let u = i as f64 / denom;
            let r = u;
            let t = 4.0 * j as f64 + 4.0 * u + 0.2 * normal(&mut rng);
            x.push((r * t.sin()) as f32);
            x.push((r * t.cos()) as f32);
            labels.push(j);
        }
    }
    Dataset {
        x,
        features: 2,
        labels,
    }
}

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A seeded permutation of `0..n` (Fisher–Yates over ChaCha8).
pub fn permutation(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

/// One-hot rows `[labels.len(), classes]`.
pub fn one_hot(labels: &[usize], classes: usize) -> Result<Tensor> {
    let mut t = vec![0.0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        if l >= classes {
            bail!("label {l} (sample {i}) is out of range: the model has {classes} outputs");
        }
        t[i * classes + l] = 1.0;
    }
    Ok(Tensor::f32(&[labels.len(), classes], t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_and_errors() {
        let d = spiral(5, 3, 1);
        let back = Dataset::from_csv(&d.to_csv(), -1, "s.csv").unwrap();
        assert_eq!(back, d);
        let h = Dataset::from_csv("a,b,label\n1,2,0\n3,4,1\n", -1, "h.csv").unwrap();
        assert_eq!(h.labels, [0, 1]);
        assert_eq!(h.x, [1.0, 2.0, 3.0, 4.0]);
        let first = Dataset::from_csv("1,2,0\n3,4,1\n", 0, "f.csv").unwrap();
        assert_eq!(first.labels, [1, 3]);
        let e = Dataset::from_csv("1,2,0\n3,x,1\n", -1, "e.csv").unwrap_err();
        assert_eq!(e.to_string(), "e.csv:2: column 2: `x` is not a number");
        let e = Dataset::from_csv("1,2,0\n3,1\n", -1, "e.csv").unwrap_err();
        assert!(e.to_string().starts_with("e.csv:2: 2 columns"), "{e}");
        let e = Dataset::from_csv("1,2,0.5\n", -1, "e.csv").unwrap_err();
        assert!(e.to_string().contains("not a class index"), "{e}");
        assert!(Dataset::from_csv("", -1, "e.csv").is_err());
    }

    #[test]
    fn spiral_is_seeded_and_shaped() {
        let a = spiral(100, 3, 0);
        assert_eq!(a.len(), 300);
        assert_eq!(a.classes(), 3);
        assert_eq!(a, spiral(100, 3, 0));
        assert_ne!(a, spiral(100, 3, 1));
        // Radii grow from 0 to 1 along each arm.
        let r = |i: usize| (a.x[2 * i].powi(2) + a.x[2 * i + 1].powi(2)).sqrt();
        assert!(r(0) < 1e-6 && (r(99) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn permutation_and_one_hot() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut p = permutation(10, &mut rng);
        p.sort_unstable();
        assert_eq!(p, (0..10).collect::<Vec<_>>());
        let t = one_hot(&[2, 0], 3).unwrap();
        assert_eq!(t.values_f64(), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        assert!(one_hot(&[3], 3).is_err());
    }
}
