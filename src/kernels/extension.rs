//! The GEMM convolution as a burn backend extension: implemented for `CubeBackend`, made lazy
//! for burn's fusion by the macro, and differentiable by a hand-written backward pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch};
use burn::prelude::*;
use burn_cubecl::CubeBackend;

use super::conv3x3;

// The output shapes fusion asks for (only builds with fusion use them).
#[cfg(any(target_arch = "wasm32", feature = "fast"))]
fn forward_shape(x: &Shape, weight: &Shape) -> Shape {
    Shape::new([x[0], weight[0], x[2], x[3]])
}

#[cfg(any(target_arch = "wasm32", feature = "fast"))]
fn input_grad_shape(grad: &Shape, weight: &Shape) -> Shape {
    Shape::new([grad[0], weight[1], grad[2], grad[3]])
}

#[cfg(any(target_arch = "wasm32", feature = "fast"))]
fn weight_grad_shape(x: &Shape, grad: &Shape) -> Shape {
    Shape::new([grad[1], x[1], 3, 3])
}

/// 3x3, stride 1, pad 1, bias-free f32 NCHW convolution and its two gradients.
#[backend_extension(Cube, Fusion: cfg(any(target_arch = "wasm32", feature = "fast")), Autodiff)]
pub trait Conv3x3Gemm: Backend {
    /// `x [n, c_in, h, w]`, `weight [c_out, c_in, 3, 3]` -> `[n, c_out, h, w]`.
    #[fusion(dtype = x, shape = forward_shape(x, weight))]
    fn conv3x3_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The input gradient: `grad [n, c_out, h, w]` -> `[n, c_in, h, w]`.
    #[fusion(dtype = grad, shape = input_grad_shape(grad, weight))]
    fn conv3x3_gemm_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;

    /// The weight gradient: `[c_out, c_in, 3, 3]`.
    #[fusion(dtype = x, shape = weight_grad_shape(x, grad))]
    fn conv3x3_gemm_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl Conv3x3Gemm for CubeBackend {
    fn conv3x3_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        conv3x3::forward(x, weight, false)
    }

    fn conv3x3_gemm_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        // Same kernel: grad_out convolved with the weight flipped and transposed (read so).
        conv3x3::forward(grad, weight, true)
    }

    fn conv3x3_gemm_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = Shape::new([grad.meta.shape()[1], x.meta.shape()[1], 3, 3]);
        let device = x.device.clone();
        match conv3x3::weight_grad_partial(x, grad) {
            // [splits, c_out, c_in * 9]: sum the per-chunk partial products.
            Some(partial) => Self::float_reshape(Self::float_sum_dim(partial, 0), shape),
            None => Self::float_zeros(shape, &device, FloatDType::F32),
        }
    }
}

/// Backward of `conv3x3_gemm`: both gradients by the GEMM kernels.
#[derive(Debug)]
struct Conv3x3GemmBackward;

impl<B: Backend + Conv3x3Gemm> Backward<B, 2> for Conv3x3GemmBackward {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv3x3_gemm_input_grad(grad.clone(), weight));
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, B::conv3x3_gemm_weight_grad(x, grad));
        }
    }
}

impl<B: Backend + Conv3x3Gemm, C: CheckpointStrategy> Conv3x3Gemm for Autodiff<B, C> {
    fn conv3x3_gemm(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        match Conv3x3GemmBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::conv3x3_gemm(x.into_primitive(), weight.into_primitive());
                prep.finish((x_state, weight_state), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv3x3_gemm(x.into_primitive(), weight.into_primitive())),
        }
    }

    // The gradients themselves are not differentiated (no second-order training here): on
    // autodiff tensors they are computed and returned untracked.
    fn conv3x3_gemm_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::conv3x3_gemm_input_grad(Self::inner(grad), Self::inner(weight)))
    }

    fn conv3x3_gemm_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::conv3x3_gemm_weight_grad(Self::inner(x), Self::inner(grad)))
    }
}

/// The recipe's convolution by the GEMM kernels, differentiable on autodiff devices. `x` and
/// `weight` must be on a CubeCL device ([`super::gemm_available`]).
pub fn conv3x3_gemm(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::conv3x3_gemm(x.into_dispatch(), weight.into_dispatch()))
}
