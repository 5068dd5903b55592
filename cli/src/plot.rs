//! Training curves as SVG (plotters).

use dlm_core::{DlmError, Result};
use dlm_tasks::model_file::write_atomic;
use dlm_tasks::trainer::EpochRecord;
use plotters::prelude::*;
use std::path::Path;

fn series_range(v: &[f64]) -> (f64, f64) {
    let (lo, hi) = v
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    }
}

type Series = (&'static str, fn(&EpochRecord) -> f64, RGBColor);

/// Writes stacked panels over epochs to an SVG file: training loss (noiseless), sigma (mean,
/// min and max over the epoch's examples), |eps| and the zero-direction rate of the estimator.
pub fn training_svg(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut panels: Vec<(&str, Vec<Series>)> = vec![
        (
            "training loss (noiseless)",
            vec![("loss", |r| r.loss, BLUE)],
        ),
        (
            "sigma (mean; min and max over the epoch)",
            vec![
                ("mean", |r| r.sigma, BLUE),
                ("min", |r| r.sigma_min, RGBColor(150, 150, 150)),
                ("max", |r| r.sigma_max, RGBColor(150, 150, 150)),
            ],
        ),
        ("|epsilon|", vec![("|eps|", |r| r.epsilon.abs(), BLUE)]),
        (
            "zero-direction rate (red: all draws; blue: draws of examples with loss left)",
            vec![
                ("zero rate", |r| r.zero_rate, RED),
                ("among examples with loss", |r| r.zero_rate_with_loss, BLUE),
            ],
        ),
    ];
    if history.iter().any(|r| r.test_accuracy.is_some()) {
        panels.push((
            "test accuracy (subset, --eval-every)",
            vec![(
                "accuracy",
                |r| r.test_accuracy.unwrap_or(f64::NAN),
                RGBColor(0, 128, 0),
            )],
        ));
    }
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (900, 300 * panels.len() as u32)).into_drawing_area();
        let err = |e: String| DlmError::invalid("plot", e);
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let areas = root.split_evenly((panels.len(), 1));
        let epochs = history.len().max(1) as f64;
        for (area, (title, series)) in areas.iter().zip(&panels) {
            let all: Vec<f64> = series
                .iter()
                .flat_map(|(_, f, _)| history.iter().map(f))
                .collect();
            let (lo, hi) = series_range(&all);
            let mut chart = ChartBuilder::on(area)
                .caption(*title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..epochs, lo..hi)
                .map_err(|e| err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(|e| err(e.to_string()))?;
            for (_, f, color) in series {
                chart
                    .draw_series(LineSeries::new(
                        history
                            .iter()
                            .enumerate()
                            .map(|(i, r)| (i as f64, f(r)))
                            .filter(|(_, y)| y.is_finite()),
                        color,
                    ))
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    /// A run interrupted before its first epoch has no history; its plot is still written.
    #[test]
    fn an_empty_history_plots() {
        let dir = std::env::temp_dir().join(format!("dlm-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("empty.svg");
        super::training_svg(&p, &[]).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("<svg"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
