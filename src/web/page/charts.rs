//! Drawing: plotters charts on canvases, and CIFAR images scaled up with their labels.

use plotters::prelude::*;
use plotters_canvas::CanvasBackend;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use crate::data::{Split, IMAGE_BYTES, NUM_CLASSES};
use crate::metrics::{BatchStats, EpochStats, Evaluation};
use crate::schedule::OneCycle;

/// Colours that read on light and dark backgrounds.
pub const BLUE: RGBColor = RGBColor(0x3b, 0x82, 0xf6);
pub const ORANGE: RGBColor = RGBColor(0xf5, 0x9e, 0x0b);
pub const GREEN: RGBColor = RGBColor(0x10, 0xb9, 0x81);
pub const RED: RGBColor = RGBColor(0xef, 0x44, 0x44);
const GREY: RGBColor = RGBColor(0x88, 0x88, 0x88);

fn dark_mode() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
        .is_some_and(|m| m.matches())
}

fn fg() -> RGBColor {
    if dark_mode() { RGBColor(0xe5, 0xe7, 0xeb) } else { RGBColor(0x1f, 0x29, 0x37) }
}

/// Axis labels and captions in the theme's foreground colour.
fn label_font() -> TextStyle<'static> {
    ("sans-serif", 11).into_font().color(&fg())
}

fn caption_font() -> TextStyle<'static> {
    ("sans-serif", 15).into_font().color(&fg())
}

fn backend(canvas: &HtmlCanvasElement) -> Option<CanvasBackend> {
    CanvasBackend::with_canvas_object(canvas.clone())
}

type DrawResult = Result<(), String>;

/// Room for an axis's tick labels plus its title, px: the title sits beyond the labels
/// (11 px labels + gap + 11 px title), so a smaller area makes them overlap.
const X_AREA: u32 = 42;
/// Vertical axes: labels up to 6 characters ("0.0550") plus the rotated title.
const Y_AREA: u32 = 62;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// The One-Cycle LR (left axis) and momentum (right axis) over all steps, current step marked.
pub fn draw_schedule(canvas: &HtmlCanvasElement, schedule: &OneCycle, current: usize, lookahead: bool) -> DrawResult {
    let root = backend(canvas).ok_or("no canvas")?.into_drawing_area();
    root.fill(&TRANSPARENT).map_err(err)?;
    let n = schedule.total_steps;
    let stride = (n / 400).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("One-Cycle schedule", caption_font())
        .margin(8)
        .x_label_area_size(X_AREA)
        .y_label_area_size(Y_AREA)
        .right_y_label_area_size(Y_AREA)
        .build_cartesian_2d(0usize..n, 0f64..schedule.max_lr * 1.05)
        .map_err(err)?
        // Lookahead's decay (0 to 0.77) shares the right axis with the momentum.
        .set_secondary_coord(0usize..n, if lookahead { 0f64..1.0 } else { 0.8f64..1.0 });
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("learning rate")
        .label_style(label_font())
        .axis_style(GREY)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc(if lookahead { "momentum, lookahead decay" } else { "momentum" })
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(label_font())
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new((0..n).step_by(stride).map(|s| (s, schedule.lr(s))), BLUE.stroke_width(2)))
        .map_err(err)?
        .label("lr")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLUE.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            (0..n).step_by(stride).map(|s| (s, schedule.momentum(s))),
            ORANGE.stroke_width(2),
        ))
        .map_err(err)?
        .label("momentum")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], ORANGE.stroke_width(2)));
    if lookahead {
        let decay = |s: usize| crate::tricks::lookahead_decay(s, n);
        chart
            .draw_secondary_series(LineSeries::new((0..n).step_by(stride).map(|s| (s, decay(s))), GREEN.stroke_width(2)))
            .map_err(err)?
            .label("lookahead decay")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], GREEN.stroke_width(2)));
    }
    let cur = current.min(n - 1);
    chart
        .draw_series(std::iter::once(Circle::new((cur, schedule.lr(cur)), 5, RED.filled())))
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            [(cur, 0.0), (cur, schedule.max_lr * 1.05)],
            RED.mix(0.4),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .label_font(label_font())
        .border_style(GREY)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Training loss per read-back against the step.
pub fn draw_loss(canvas: &HtmlCanvasElement, batches: &[BatchStats], total_steps: usize) -> DrawResult {
    let root = backend(canvas).ok_or("no canvas")?.into_drawing_area();
    root.fill(&TRANSPARENT).map_err(err)?;
    let max_loss = batches.iter().map(|b| b.loss).filter(|l| l.is_finite()).fold(0.5f32, f32::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Training loss", caption_font())
        .margin(8)
        .x_label_area_size(X_AREA)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d(0usize..total_steps.max(1), 0f32..max_loss * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .label_style(label_font())
        .axis_style(GREY)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(batches.iter().map(|b| (b.step, b.loss)), BLUE.stroke_width(2)))
        .map_err(err)?;
    // Markers too: a short run has only a read-back or two, which a line alone does not show.
    if batches.len() < 60 {
        chart
            .draw_series(batches.iter().map(|b| Circle::new((b.step, b.loss), 3, BLUE.filled())))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Per-epoch train and test loss (left) and accuracy (right).
pub fn draw_accuracy(canvas: &HtmlCanvasElement, epochs: &[EpochStats], total_epochs: usize) -> DrawResult {
    let root = backend(canvas).ok_or("no canvas")?.into_drawing_area();
    root.fill(&TRANSPARENT).map_err(err)?;
    let max_loss = epochs
        .iter()
        .flat_map(|e| [e.train_loss, e.test_loss])
        .filter(|l| l.is_finite())
        .fold(0.5f32, f32::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Loss and accuracy per epoch", caption_font())
        .margin(8)
        .x_label_area_size(X_AREA)
        .y_label_area_size(Y_AREA)
        .right_y_label_area_size(Y_AREA)
        .build_cartesian_2d(0f32..total_epochs.max(1) as f32, 0f32..max_loss * 1.05)
        .map_err(err)?
        .set_secondary_coord(0f32..total_epochs.max(1) as f32, 0f32..1f32);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .label_style(label_font())
        .axis_style(GREY)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("accuracy")
        .label_style(label_font())
        .draw()
        .map_err(err)?;
    let pts = |f: fn(&EpochStats) -> f32| epochs.iter().map(move |e| (e.epoch as f32, f(e))).collect::<Vec<_>>();
    let series: [(&str, RGBColor, bool, fn(&EpochStats) -> f32); 4] = [
        ("train loss", BLUE, false, |e| e.train_loss),
        ("test loss", ORANGE, false, |e| e.test_loss),
        ("train acc", GREEN, true, |e| e.train_acc),
        ("test acc", RED, true, |e| e.test_acc),
    ];
    for (label, color, secondary, f) in series {
        let points = pts(f);
        let style = color.stroke_width(2);
        let anno = if secondary {
            chart.draw_secondary_series(LineSeries::new(points.clone(), style)).map_err(err)?;
            chart
                .draw_secondary_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(err)?
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style)).map_err(err)?;
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(err)?
        };
        anno.label(label).legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    // The seed's target as a line, and where the test accuracy first reached each target.
    let target = 0.93f32;
    chart
        .draw_secondary_series(LineSeries::new(
            [(0.0, target), (total_epochs.max(1) as f32, target)],
            GREY.mix(0.8).stroke_width(1),
        ))
        .map_err(err)?
        .label("target 93%")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], GREY.stroke_width(1)));
    for (t, hit) in crate::metrics::first_crossings(epochs, &crate::metrics::TARGETS) {
        let Some(c) = hit else { continue };
        let x = c.epoch as f32;
        chart
            .draw_secondary_series(std::iter::once(PathElement::new([(x, 0.0), (x, t)], RED.mix(0.3))))
            .map_err(err)?;
        chart
            .draw_secondary_series(std::iter::once(Text::new(
                format!("{:.0}% {}", t * 100.0, crate::metrics::clock(c.total_time_s)),
                (x, t),
                label_font(),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleRight)
        .label_font(label_font())
        .border_style(GREY)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Smoothed loss against LR on a log axis, with the suggestion marked.
pub fn draw_lr_finder(canvas: &HtmlCanvasElement, points: &[(f64, f32)], suggestion: Option<f64>) -> DrawResult {
    let root = backend(canvas).ok_or("no canvas")?.into_drawing_area();
    root.fill(&TRANSPARENT).map_err(err)?;
    let finite: Vec<(f64, f32)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
    let (lo, hi) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (1e-5, 1.0) };
    let min_loss = finite.iter().map(|p| p.1).fold(f32::MAX, f32::min).min(10.0);
    let first = finite.first().map(|p| p.1).unwrap_or(3.0);
    let top = (first * 1.5).max(min_loss + 0.1);
    let mut chart = ChartBuilder::on(&root)
        .caption("LR range test", caption_font())
        .margin(8)
        .x_label_area_size(X_AREA)
        .y_label_area_size(Y_AREA)
        .build_cartesian_2d((lo..hi).log_scale(), (min_loss * 0.95)..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("learning rate (log)")
        .y_desc("smoothed loss")
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.0e}"))
        // A dozen ticks in 150 px crowded the axis, and one decimal printed 3.95 and 4.04 alike.
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(label_font())
        .axis_style(GREY)
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(finite.iter().map(|p| (p.0, p.1.min(top))), BLUE.stroke_width(2)))
        .map_err(err)?;
    if let Some(s) = suggestion.filter(|s| *s >= lo && *s <= hi) {
        chart
            .draw_series(std::iter::once(PathElement::new([(s, min_loss * 0.95), (s, top)], RED.stroke_width(2))))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("suggested {s:.3}"),
                (s, top),
                ("sans-serif", 12).into_font().color(&RED),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok().flatten()?.dyn_into().ok()
}

/// Draws a planar 32x32 image at (x, y), `scale` pixels per pixel.
pub fn draw_image(ctx: &CanvasRenderingContext2d, planar: &[u8], x: f64, y: f64, scale: u32) {
    let s = scale as usize;
    let side = 32 * s;
    let mut rgba = vec![255u8; side * side * 4];
    for py in 0..side {
        for px in 0..side {
            let src = (py / s) * 32 + px / s;
            let o = (py * side + px) * 4;
            rgba[o] = planar[src];
            rgba[o + 1] = planar[1024 + src];
            rgba[o + 2] = planar[2048 + src];
        }
    }
    if let Ok(img) = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), side as u32, side as u32) {
        let _ = ctx.put_image_data(&img, x, y);
    }
}

/// Undoes normalisation for display (cutout squares show as the mean colour).
pub fn denormalise(image: &[f32], norm: &crate::augment::Normalization) -> Vec<u8> {
    let mut out = vec![0u8; IMAGE_BYTES];
    for c in 0..3 {
        for i in 0..1024 {
            let v = image[c * 1024 + i] * norm.std[c] + norm.mean[c];
            out[c * 1024 + i] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A grid of labelled images: `images` are planar u8, `labels` one caption each.
pub fn draw_grid(canvas: &HtmlCanvasElement, images: &[Vec<u8>], captions: &[String], cols: usize, scale: u32) {
    let Some(ctx) = context(canvas) else { return };
    let cell_w = 32.0 * scale as f64 + 8.0;
    let cell_h = 32.0 * scale as f64 + 30.0;
    let rows = images.len().div_ceil(cols.max(1));
    canvas.set_width((cell_w * cols as f64) as u32);
    canvas.set_height((cell_h * rows.max(1) as f64) as u32);
    ctx.clear_rect(0.0, 0.0, canvas.width() as f64, canvas.height() as f64);
    ctx.set_font("11px sans-serif");
    ctx.set_fill_style_str(if dark_mode() { "#e5e7eb" } else { "#1f2937" });
    for (k, img) in images.iter().enumerate() {
        let (x, y) = ((k % cols) as f64 * cell_w + 4.0, (k / cols) as f64 * cell_h + 4.0);
        draw_image(&ctx, img, x, y, scale);
        for (line, text) in captions.get(k).map(|s| s.as_str()).unwrap_or("").split('\n').enumerate() {
            let _ = ctx.fill_text(text, x, y + 32.0 * scale as f64 + 11.0 + 11.0 * line as f64);
        }
    }
}

/// Heat map of the confusion matrix with per-class accuracy.
pub fn draw_confusion(canvas: &HtmlCanvasElement, eval: &Evaluation, class_names: &[String]) {
    let Some(ctx) = context(canvas) else { return };
    let cell = 34.0;
    let left = 80.0;
    let top = 70.0;
    canvas.set_width((left + cell * NUM_CLASSES as f64 + 70.0) as u32);
    canvas.set_height((top + cell * NUM_CLASSES as f64 + 10.0) as u32);
    ctx.clear_rect(0.0, 0.0, canvas.width() as f64, canvas.height() as f64);
    let text = if dark_mode() { "#e5e7eb" } else { "#1f2937" };
    ctx.set_font("11px sans-serif");
    let acc = eval.per_class_accuracy();
    for (t, row) in eval.confusion.iter().enumerate() {
        let total: u32 = row.iter().sum::<u32>().max(1);
        for (p, &count) in row.iter().enumerate() {
            let frac = count as f64 / total as f64;
            let (r, g, b) = if t == p { (16, 185, 129) } else { (239, 68, 68) };
            let alpha = if count == 0 { 0.04 } else { 0.15 + 0.85 * frac.sqrt() };
            ctx.set_fill_style_str(&format!("rgba({r},{g},{b},{alpha:.3})"));
            let (x, y) = (left + p as f64 * cell, top + t as f64 * cell);
            ctx.fill_rect(x, y, cell - 2.0, cell - 2.0);
            if count > 0 {
                ctx.set_fill_style_str(text);
                let _ = ctx.fill_text(&count.to_string(), x + 4.0, y + cell / 2.0 + 3.0);
            }
        }
        ctx.set_fill_style_str(text);
        let name = class_names.get(t).map(String::as_str).unwrap_or("?");
        let _ = ctx.fill_text(name, 4.0, top + t as f64 * cell + cell / 2.0 + 3.0);
        let _ = ctx.fill_text(
            &format!("{:.0}%", 100.0 * acc[t]),
            left + NUM_CLASSES as f64 * cell + 6.0,
            top + t as f64 * cell + cell / 2.0 + 3.0,
        );
    }
    for p in 0..NUM_CLASSES {
        let name = class_names.get(p).map(String::as_str).unwrap_or("?");
        ctx.save();
        let _ = ctx.translate(left + p as f64 * cell + cell / 2.0, top - 6.0);
        let _ = ctx.rotate(-std::f64::consts::FRAC_PI_4);
        let _ = ctx.fill_text(name, 0.0, 0.0);
        ctx.restore();
    }
    let _ = ctx.fill_text("true ↓  predicted →", 4.0, 14.0);
}

/// The images of a split by index, planar u8.
pub fn images_of(split: &Split, indices: &[usize]) -> Vec<Vec<u8>> {
    indices.iter().filter(|&&i| i < split.len()).map(|&i| split.image(i).to_vec()).collect()
}
