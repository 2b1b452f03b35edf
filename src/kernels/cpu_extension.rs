//! The direct CPU convolution (`direct.rs`) as a burn backend extension on burn-flex, made
//! differentiable by a hand-written backward pass (both gradients by our kernels), the way
//! `extension.rs` reaches the GPU kernels.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, Flex};
use burn::prelude::*;

use super::direct;

/// 3x3, stride 1, pad 1, bias-free f32 NCHW convolution and its two gradients on the CPU.
#[backend_extension(Flex, Autodiff)]
pub trait Conv3x3Direct: Backend {
    /// `x [n, c_in, h, w]`, `weight [c_out, c_in, 3, 3]` -> `[n, c_out, h, w]`.
    fn conv3x3_direct(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The input gradient: `grad [n, c_out, h, w]` -> `[n, c_in, h, w]`.
    fn conv3x3_direct_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The weight gradient: `[c_out, c_in, 3, 3]`.
    fn conv3x3_direct_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// 2x2, stride 2 max-pool: `x [n, c, h, w]` -> `[n, c, h/2, w/2]`.
    fn max_pool2x2_direct(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Its input gradient: `grad [n, c, h/2, w/2]` -> `[n, c, h, w]`.
    fn max_pool2x2_direct_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// A flex tensor's f32 values in row-major order (borrowed when contiguous, else copied).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.clone().into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()),
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.layout().shape();
    [s[0], s[1], s[2], s[3]]
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl Conv3x3Direct for Flex {
    fn conv3x3_direct(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, c_in, h, w] = dims4(&x);
        let c_out = dims4(&weight)[0];
        let out = direct::conv3x3(&values(&x), n, h, w, &values(&weight), c_out, c_in, false);
        tensor(out, [n, c_out, h, w])
    }

    fn conv3x3_direct_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, c_out, h, w] = dims4(&grad);
        let c_in = dims4(&weight)[1];
        let out = direct::conv3x3(&values(&grad), n, h, w, &values(&weight), c_out, c_in, true);
        tensor(out, [n, c_in, h, w])
    }

    fn conv3x3_direct_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, c_in, h, w] = dims4(&x);
        let c_out = dims4(&grad)[1];
        let dw = direct::conv3x3_weight_grad(&values(&x), &values(&grad), n, c_in, c_out, h, w);
        tensor(dw, [c_out, c_in, 3, 3])
    }

    fn max_pool2x2_direct(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, c, h, w] = dims4(&x);
        tensor(direct::max_pool2x2(&values(&x), n, c, h, w), [n, c, h / 2, w / 2])
    }

    fn max_pool2x2_direct_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [n, c, h, w] = dims4(&x);
        tensor(direct::max_pool2x2_backward(&values(&x), &values(&grad), n, c, h, w), [n, c, h, w])
    }
}

/// Backward of `max_pool2x2_direct`: the gradient to each window's maximum.
#[derive(Debug)]
struct MaxPool2x2DirectBackward;

impl<B: Backend + Conv3x3Direct> Backward<B, 1> for MaxPool2x2DirectBackward {
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(ops.state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::max_pool2x2_direct_backward(x, grad));
        }
    }
}

/// Backward of `conv3x3_direct`: both gradients by the direct kernels.
#[derive(Debug)]
struct Conv3x3DirectBackward;

impl<B: Backend + Conv3x3Direct> Backward<B, 2> for Conv3x3DirectBackward {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv3x3_direct_input_grad(grad.clone(), weight));
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::conv3x3_direct_weight_grad(x, grad));
        }
    }
}

impl<B: Backend + Conv3x3Direct, C: CheckpointStrategy> Conv3x3Direct for Autodiff<B, C> {
    fn conv3x3_direct(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match Conv3x3DirectBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::conv3x3_direct(x.into_primitive(), weight.into_primitive());
                prep.finish((x_state, weight_state), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv3x3_direct(x.into_primitive(), weight.into_primitive())),
        }
    }

    fn max_pool2x2_direct(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match MaxPool2x2DirectBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let out = B::max_pool2x2_direct(x.into_primitive());
                prep.finish(x_state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool2x2_direct(x.into_primitive())),
        }
    }

    fn max_pool2x2_direct_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::max_pool2x2_direct_backward(Self::inner(x), Self::inner(grad)))
    }

    // Not differentiated again (no second-order training): computed and returned untracked.
    fn conv3x3_direct_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::conv3x3_direct_input_grad(Self::inner(grad), Self::inner(weight)))
    }

    fn conv3x3_direct_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::conv3x3_direct_weight_grad(Self::inner(x), Self::inner(grad)))
    }
}

/// The recipe's convolution by the direct CPU kernels, differentiable on autodiff devices.
/// `x` and `weight` must be on burn-flex ([`super::direct_available`]).
pub fn conv3x3_direct(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv3x3_direct(x.into_dispatch(), weight.into_dispatch()))
}

/// The recipe's 2x2 max-pool by our CPU kernel, differentiable on autodiff devices (burn-flex
/// only, as [`conv3x3_direct`]).
pub fn max_pool2x2_direct(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::max_pool2x2_direct(x.into_dispatch()))
}
