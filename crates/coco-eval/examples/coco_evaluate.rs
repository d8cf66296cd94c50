//! Evaluates a results file against a COCO instances file and prints the summary with the
//! time of each phase.
//!
//!     cargo run --release -p rtb-coco-eval --example coco_evaluate -- GT.json DT.json [bbox|segm]

use std::time::Instant;

use rtb_coco_eval::{CocoEval, CocoGt, Detections, IouType, Params};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gt_path, dt_path, rest @ ..] = args.as_slice() else {
        return Err("usage: evaluate GT.json DT.json [bbox|segm]".into());
    };
    let iou_type: IouType = rest.first().map_or("bbox", String::as_str).parse()?;
    let started = Instant::now();
    let gt = CocoGt::from_path(gt_path)?;
    let gt_loaded = started.elapsed();
    let dt = Detections::from_path(dt_path, &gt)?;
    let dt_loaded = started.elapsed();
    let evaluation = CocoEval::new(&gt, &dt, Params::new(iou_type)).evaluate()?;
    let evaluated = started.elapsed();
    let accumulation = evaluation.accumulate();
    let accumulated = started.elapsed();
    let summary = accumulation.summarize()?;
    #[allow(clippy::print_stdout)]
    {
        print!("{summary}");
        for warning in evaluation.warnings() {
            println!("warning: {warning}");
        }
        println!(
            "load gt {:.3}s, load dt {:.3}s, evaluate {:.3}s, accumulate {:.3}s, total {:.3}s",
            gt_loaded.as_secs_f64(),
            (dt_loaded - gt_loaded).as_secs_f64(),
            (evaluated - dt_loaded).as_secs_f64(),
            (accumulated - evaluated).as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
