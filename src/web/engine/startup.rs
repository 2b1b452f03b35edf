//! The compute device: WebGPU and its self-test, or the CPU (no WebGPU, a failed GPU, or
//! `?device=cpu`) with its self-test and its helper workers (`pool.rs`).

use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;

use super::actions::*;
use super::dataset::*;
use super::device;
use super::gpu::{GpuInfo, HOW_TO_GET_WEBGPU};
use super::state::*;
use crate::model::ConvAlgorithm;
use crate::replicas::Helpers as _;
use crate::web::protocol::{ComputeView, DeviceChoice, GpuUnavailable, GpuView, Place, StartOptions, Update};

/// WebGPU, its self-test, and the data of an earlier visit from the browser cache.
pub async fn start(options: StartOptions) {
    crate::ctors::run_once();
    if options.count_gpu_calls {
        crate::web::probe::install();
    }
    let conv = options.conv.as_deref().and_then(ConvAlgorithm::parse);
    if let Some(algorithm) = conv {
        crate::model::set_conv_algorithm(algorithm);
    }
    with_engine(|e| {
        e.conv_auto = conv.is_none();
        e.options = options;
    });
    spawn_local(load_cache());
    let choice = with_engine(|e| e.options.device);
    if choice == DeviceChoice::Cpu {
        emit(Update::Gpu(Err(GpuUnavailable {
            plain: "WebGPU is not used: this link asks for the CPU (?device=cpu).".into(),
            reason: "this link asks for it (?device=cpu)".into(),
            detail: "?device=cpu".into(),
        })));
        return use_cpu("this link asks for it (?device=cpu)".into()).await;
    }
    match super::gpu::init().await {
        Ok(g) => {
            emit(Update::Gpu(Ok(GpuView { name: g.name.clone(), summary: g.summary() })));
            use_gpu(g).await
        }
        Err(why) if choice == DeviceChoice::Gpu => {
            let plain = format!(
                "{} This link asks for the GPU only (?device=gpu), so nothing trains. {HOW_TO_GET_WEBGPU}",
                why.plain
            );
            emit(Update::Gpu(Err(GpuUnavailable { plain, ..why })));
            emit(Update::Compute(ComputeView {
                cpu: false,
                ready: true,
                line: "Nothing trains: this link asks for the GPU only (?device=gpu) and WebGPU is not available."
                    .into(),
                device_key: String::new(),
                suggestion: None,
            }));
            with_engine(|e| e.gpu_settled = true);
            run_waiting();
        }
        Err(why) => {
            let plain = format!("{} This page trains on your CPU instead (slower). {HOW_TO_GET_WEBGPU}", why.plain);
            let reason = why.reason.clone();
            emit(Update::Gpu(Err(GpuUnavailable { plain, ..why })));
            use_cpu(reason).await
        }
    }
}

/// Makes the CPU the engine's device (`reason`: why, in a few words) and runs the self-test on
/// it: wasm's float arithmetic and burn-flex's kernels are checked like a GPU's. Its outcome
/// shows in the compute device's line; the GPU self-test's line keeps what the GPU did.
pub async fn use_cpu(reason: String) {
    with_engine(|e| {
        e.gpu = None;
        e.cpu = Some(reason.clone());
        e.selftest = None;
        e.gpu_settled = true;
    });
    let wanted = with_engine(|e| device::cpu_workers(e.options.cpu_workers));
    emit(Update::Compute(device::cpu_view(&reason, wanted, None)));
    // The fault hook corrupts the GPU's results only: a CPU that takes over from a failed GPU
    // must not fail the same way.
    let report = crate::selftest::run(&device::cpu(), &crate::selftest::Fault(None)).await;
    let mut line = match &report {
        Ok(r) => {
            // A link's `?conv=gemm` names a GPU kernel: the CPU takes one that passed.
            let usable = r.usable_convs();
            if let Some(&first) = usable.first().filter(|_| !usable.contains(&crate::model::conv_algorithm())) {
                crate::model::set_conv_algorithm(first);
            }
            r.summary_on("Self-test", "the CPU")
        }
        Err(e) => format!("The self-test could not run on the CPU: {e}"),
    };
    if report.is_ok() && wanted > 1 {
        line += &start_helpers(wanted - 1).await;
    }
    let workers = 1 + with_engine(|e| e.pool.as_ref().map_or(0, |p| p.count()));
    emit(Update::Compute(device::cpu_view(&reason, workers, Some(&line))));
    with_engine(|e| e.selftest = Some(report));
    run_waiting();
}

/// Starts `n` helper workers beside the engine; returns what the compute line adds when some
/// did not start.
pub async fn start_helpers(n: usize) -> String {
    if let Some(old) = with_engine(|e| e.pool.take()) {
        old.stop();
    }
    let kill_at = with_engine(|e| e.options.kill_cpu_worker_at);
    let on_retire: Rc<dyn Fn(String, usize)> = Rc::new(|why: String, left: usize| {
        let reason = with_engine(|e| e.cpu.clone()).unwrap_or_default();
        let line = format!(
            "A CPU worker stopped ({why}); training goes on with {} (the step it was in was computed by the others).",
            device::cpu_name(left + 1)
        );
        say(Place::Train, false, line.clone());
        emit(Update::Compute(device::cpu_view(&reason, left + 1, Some(&line))));
    });
    let (pool, failures) = super::pool::Pool::start(n, kill_at, on_retire).await;
    with_engine(|e| e.pool = Some(Rc::new(pool)));
    if failures.is_empty() {
        String::new()
    } else {
        format!(" {} of {n} CPU helper workers did not start ({}).", failures.len(), failures.join("; "))
    }
}

/// Makes `gpu` the engine's device: watches for its loss, then runs the self-test on it.
pub async fn use_gpu(gpu: GpuInfo) {
    with_engine(|e| {
        e.gpu = Some(gpu.clone());
        e.gpu_settled = true;
    });
    super::gpu::watch_errors(&gpu);
    super::gpu::take_error();
    let watched = gpu.clone();
    spawn_local(async move {
        let Some(reason) = super::gpu::lost(&watched).await else { return };
        // A device already replaced is old news.
        let current = with_engine(|e| e.gpu.as_ref().is_some_and(|g| g.setup.device == watched.setup.device));
        if !current {
            return;
        }
        log::error!("the GPU device was lost: {reason}");
        set_device_lost(Some(reason.clone()));
        if !busy() {
            say(Place::Train, true, format!("The GPU device was lost ({reason}). Press \"Continue on a new device\"."));
        }
    });
    emit(Update::SelfTest(None));
    with_engine(|e| e.selftest = None);
    if with_engine(|e| e.options.hold_selftest) {
        while with_engine(|e| e.waiting.is_none()) {
            gloo::timers::future::TimeoutFuture::new(50).await;
        }
    }
    self_test(gpu).await;
}

/// Runs the GPU self-test once WebGPU is up; a convolution algorithm that fails is replaced by
/// one that passed, and if the basics fail every GPU action is refused (`gpu_ready`). A GPU
/// action clicked meanwhile runs once it passes.
pub async fn self_test(gpu: GpuInfo) {
    let fault = crate::selftest::Fault(with_engine(|e| e.options.selftest_fault.clone()));
    let report = match crate::selftest::run(&gpu.device, &fault).await {
        Ok(r) => r,
        Err(e) => {
            emit(Update::SelfTest(Some((false, format!("GPU self-test could not run on {}: {e}", gpu.name)))));
            with_engine(|en| en.selftest = Some(Err(e)));
            if with_engine(|e| e.options.device) != DeviceChoice::Gpu {
                return use_cpu("the GPU did not answer its self-test (see above)".into()).await;
            }
            return run_waiting();
        }
    };
    let usable = report.usable_convs();
    let current = crate::model::conv_algorithm();
    if !usable.contains(&current) {
        if let Some(&first) = usable.first() {
            crate::model::set_conv_algorithm(first);
            if !with_engine(|e| e.conv_auto) {
                emit(Update::ConvChoice(format!(
                    "Convolutions: {} (the link's {} failed the GPU self-test)",
                    first.name(),
                    current.name()
                )));
            }
        }
    }
    emit(Update::SelfTest(Some((report.passed(), report.summary(&gpu.name)))));
    let unusable = !report.basics_ok() || usable.is_empty();
    with_engine(|e| e.selftest = Some(Ok(report)));
    // Wrong basics would train garbage: the CPU takes over, unless the link wants the GPU only.
    if unusable && with_engine(|e| e.options.device) != DeviceChoice::Gpu {
        return use_cpu("this GPU failed its self-test (see above)".into()).await;
    }
    emit(Update::Compute(device::gpu_view(&gpu.name, &gpu.key)));
    run_waiting();
}
