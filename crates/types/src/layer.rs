//! One quantizable point of a denoiser graph and the role the graph gave it.

use crate::WeightFormat;
use serde::{Deserialize, Serialize};

/// Whether a layer multiplies by a stored weight or multiplies two activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// Conv, ConvTranspose, Gemm or MatMul with a constant weight operand.
    Weight,
    /// MatMul or Einsum whose operands are both activations (attention QK^T and AV).
    ActMatMul,
}

/// What a layer does in the network, derived from the graph's wiring, never from names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A convolution on the image path that is none of the roles below.
    Conv,
    /// A matrix product on the image path that is none of the roles below.
    Linear,
    /// Time or condition embedding: its input depends on the timestep/sigma or on vector
    /// conditions, never on the noisy sample.
    Embedding,
    /// Query projection of self-attention (the sequence is the image itself).
    AttnQ,
    AttnK,
    AttnV,
    /// One projection producing queries, keys and values together (split afterwards).
    AttnQkv,
    AttnOut,
    /// Query projection of an attention whose keys come from the text-encoder output.
    CrossAttnQ,
    /// Key/value projections whose input is the text-encoder output.
    CrossAttnK,
    CrossAttnV,
    CrossAttnOut,
    /// First or second linear of a feed-forward block (linear → activation → linear).
    FeedForward,
    /// Activation × activation product feeding a softmax (QK^T).
    AttnScores,
    /// Activation × activation product consuming a softmax (AV).
    AttnValues,
    CrossAttnScores,
    CrossAttnValues,
    /// Any other activation × activation product.
    ActMatMul,
}

/// MixDQ's metric decoupling: content layers are scored by the final image's SSIM, quality
/// layers by the SQNR of the denoiser output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricGroup {
    Content,
    Quality,
}

/// What the program's losses measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossBasis {
    /// MixDQ's decoupled metrics: denoiser-output SQNR for quality layers, final-image SSIM
    /// for content layers, mixed by the content weight.
    #[default]
    Decoupled,
    /// The final image's MSE for every layer: one additive loss whose sum predicts the PSNR.
    Image,
}

crate::named_enum!(LossBasis, "loss basis", { Decoupled => "decoupled", Image => "image" });

crate::named_enum!(Role, "role", {
    Conv => "conv",
    Linear => "linear",
    Embedding => "embedding",
    AttnQ => "attn_q",
    AttnK => "attn_k",
    AttnV => "attn_v",
    AttnQkv => "attn_qkv",
    AttnOut => "attn_out",
    CrossAttnQ => "cross_attn_q",
    CrossAttnK => "cross_attn_k",
    CrossAttnV => "cross_attn_v",
    CrossAttnOut => "cross_attn_out",
    FeedForward => "feed_forward",
    AttnScores => "attn_scores",
    AttnValues => "attn_values",
    CrossAttnScores => "cross_attn_scores",
    CrossAttnValues => "cross_attn_values",
    ActMatMul => "act_matmul",
});

crate::named_enum!(MetricGroup, "metric group", { Content => "content", Quality => "quality" });

/// The token axis of a text embedding `[batch, tokens, width]`, and of the K/V projections of it.
pub const TOKEN_AXIS: usize = 1;

impl Role {
    /// Whether the layer's activation input is the text-encoder output (cross-attention K/V).
    pub fn reads_text(self) -> bool {
        matches!(self, Role::CrossAttnK | Role::CrossAttnV)
    }

    /// Cross-attention and feed-forward layers move *what* is drawn (MixDQ's content group).
    pub fn metric_group(self) -> MetricGroup {
        match self {
            Role::CrossAttnQ
            | Role::CrossAttnK
            | Role::CrossAttnV
            | Role::CrossAttnOut
            | Role::CrossAttnScores
            | Role::CrossAttnValues
            | Role::FeedForward => MetricGroup::Content,
            _ => MetricGroup::Quality,
        }
    }
}

/// The network of a pipeline a layer belongs to; a single denoiser file is the `unet`
/// component, whatever its architecture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    #[default]
    Unet,
    TextEncoder,
    VaeDecoder,
}

crate::named_enum!(Component, "component", {
    Unet => "unet",
    TextEncoder => "text_encoder",
    VaeDecoder => "vae_decoder",
});

/// What every stage record (table row, solver option, plan entry) says about a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub component: Component,
    /// The node name, unique within the component.
    pub name: String,
    /// ONNX operator type.
    pub op: String,
    pub role: Role,
    /// Which metric drives the layer (MixDQ's decoupling; a config may override the role's).
    pub group: MetricGroup,
    /// Weight parameters (0 for activation products).
    pub params: u64,
    /// Multiply-accumulates of one forward at batch 1; None where unknown.
    pub macs: Option<u64>,
    /// Output channels of the weight, each of `params / outputs` values; None where unknown (an
    /// older record, an activation product).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<u64>,
}

impl LayerInfo {
    /// `component/name`, unique across a pipeline.
    pub fn id(&self) -> String {
        format!("{}/{}", self.component, self.name)
    }

    /// Whether `key` names this layer: its name alone or its `component/name` id.
    pub fn is_named(&self, key: &str) -> bool {
        names(self.component, &self.name, key)
    }

    /// Float16 values the low-rank branch of `format` adds to this layer (0 where it keeps none,
    /// or the layer's output channels are unknown).
    pub fn branch_values(&self, format: &WeightFormat) -> u64 {
        self.outputs.filter(|&o| o > 0).map_or(0, |o| format.branch_values(o, self.params / o))
    }
}

fn names(component: Component, name: &str, key: &str) -> bool {
    key == name || key.split_once('/').is_some_and(|(c, n)| c == component.as_str() && n == name)
}

/// A quantizable point of the graph, with its cost at the model's input size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    pub component: Component,
    /// Unique name (the node name, or `{op}_{index}` where the graph left it empty).
    pub name: String,
    /// ONNX operator type: Conv, ConvTranspose, Gemm, MatMul or Einsum.
    pub op: String,
    pub kind: LayerKind,
    pub role: Role,
    /// Initializer holding the weight (weight layers only).
    pub weight: Option<String>,
    /// Shape of the weight (weight layers only).
    pub weight_shape: Vec<usize>,
    /// Axis of `weight` that indexes output channels (per-channel quantization runs along it).
    pub channel_axis: Option<usize>,
    /// Number of weight parameters (0 for activation products).
    pub params: u64,
    /// Multiply-accumulates of one forward at the shapes the model was measured with.
    pub macs: Option<u64>,
    /// Activation inputs of the node, in operand order.
    pub inputs: Vec<String>,
    pub output: String,
}

impl Layer {
    /// Whether `key` names this layer: its name alone or its `component/name` id.
    pub fn is_named(&self, key: &str) -> bool {
        names(self.component, &self.name, key)
    }

    /// The layer as stage records describe it, driven by `group`.
    pub fn info(&self, group: MetricGroup) -> LayerInfo {
        LayerInfo {
            component: self.component,
            name: self.name.clone(),
            op: self.op.clone(),
            role: self.role,
            group,
            params: self.params,
            macs: self.macs,
            outputs: self.channel_axis.and_then(|a| self.weight_shape.get(a)).map(|&o| o as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_and_groups_follow_mixdq() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("attention".parse::<Role>().is_err());
        assert_eq!(Role::CrossAttnK.metric_group(), MetricGroup::Content);
        assert_eq!(Role::FeedForward.metric_group(), MetricGroup::Content);
        assert_eq!(Role::AttnQkv.metric_group(), MetricGroup::Quality);
        assert_eq!(Role::Embedding.metric_group(), MetricGroup::Quality);
    }

    #[test]
    fn a_layer_answers_to_its_name_and_its_component_id() {
        let info = LayerInfo {
            component: Component::TextEncoder,
            name: "mlp/fc1".into(),
            op: "MatMul".into(),
            role: Role::FeedForward,
            group: MetricGroup::Content,
            params: 8,
            macs: None,
            outputs: None,
        };
        assert_eq!(info.id(), "text_encoder/mlp/fc1");
        assert!(info.is_named("mlp/fc1") && info.is_named("text_encoder/mlp/fc1"));
        assert!(!info.is_named("unet/mlp/fc1") && !info.is_named("fc1"));
        assert_eq!("vae_decoder".parse::<Component>(), Ok(Component::VaeDecoder));
    }
}
