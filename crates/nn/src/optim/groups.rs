//! Parameter groups from parameter names, following mmcv's `DefaultOptimizerConstructor`
//! with a `paramwise_cfg`.
//!
//! For each parameter, the first custom key (longest first, then alphabetical, as mmcv sorts
//! them) contained in its name gives its `lr_mult` and `decay_mult`. Otherwise, a bias (last
//! name segment `bias`) that is not in a norm layer gets `bias_decay_mult`; a parameter of a
//! norm layer gets `norm_decay_mult`; anything else gets multipliers 1.
//!
//! mmcv recognises norm layers by module type; from names alone a norm layer is one whose
//! module path has a segment starting with one of `norm_prefixes` (`norm`, `bn`, `ln`, `gn` by
//! default: `norm1`, `bn2`, `layer_norm` is *not* matched). A model whose norm layers have
//! other names (torchvision ResNet's `downsample.1`) adds them with
//! [`ParamGroupsBuilder::norm_prefix`] or a custom key.
//!
//! Names are the fallback: a model that knows what each parameter is passes a [`ParamRole`]
//! ([`ParamGroupsBuilder::build_with_roles`]), and then a norm is a norm whatever it is
//! called (torchvision's `downsample.1`, ConvNeXt's `stem.1`, a new architecture's names).

use candle_core::Var;

/// What a parameter is, as far as grouping cares (the model says; names need not tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// A convolution or linear weight.
    Weight,
    /// A convolution or linear bias.
    Bias,
    /// A norm layer's scale or shift.
    Norm,
    /// A position table or a layer scale: no weight decay in the usual recipes (timm and
    /// mmcv exempt them); grouped with the norms.
    Table,
}

use super::ParamGroup;

/// One mmcv `custom_keys` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    /// Substring of the parameter name.
    pub key: String,
    /// Learning-rate multiplier.
    pub lr_mult: f64,
    /// Weight-decay multiplier.
    pub decay_mult: f64,
}

/// Builds [`ParamGroup`]s from named variables.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroupsBuilder {
    rules: Vec<GroupRule>,
    bias_decay_mult: Option<f64>,
    norm_decay_mult: Option<f64>,
    norm_prefixes: Vec<String>,
}

impl Default for ParamGroupsBuilder {
    /// No rules: every parameter in one group with multipliers 1.
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            bias_decay_mult: None,
            norm_decay_mult: None,
            norm_prefixes: ["norm", "bn", "ln", "gn"].map(String::from).to_vec(),
        }
    }
}

impl ParamGroupsBuilder {
    /// mmdet's Swin Mask R-CNN / mmseg's Swin UperNet `paramwise_cfg`: `custom_keys`
    /// `absolute_pos_embed`, `relative_position_bias_table` and `norm` with `decay_mult = 0`.
    pub fn mmdet_swin() -> Self {
        Self::default()
            .custom_key("absolute_pos_embed", 1.0, 0.0)
            .custom_key("relative_position_bias_table", 1.0, 0.0)
            .custom_key("norm", 1.0, 0.0)
    }

    /// No weight decay for norm layers, biases and position tables (`absolute_pos_embed`,
    /// `relative_position_bias_table`, `pos_embed`), decay 1 for everything else.
    pub fn no_decay_for_norms_biases_and_position_tables() -> Self {
        Self::default()
            .custom_key("absolute_pos_embed", 1.0, 0.0)
            .custom_key("relative_position_bias_table", 1.0, 0.0)
            .custom_key("pos_embed", 1.0, 0.0)
            .bias_decay_mult(0.0)
            .norm_decay_mult(0.0)
    }

    /// Adds a custom key.
    pub fn custom_key(mut self, key: impl Into<String>, lr_mult: f64, decay_mult: f64) -> Self {
        self.rules.push(GroupRule {
            key: key.into(),
            lr_mult,
            decay_mult,
        });
        // mmcv: sorted(sorted(keys), key=len, reverse=True).
        self.rules.sort_by(|a, b| a.key.cmp(&b.key));
        self.rules
            .sort_by_key(|rule| std::cmp::Reverse(rule.key.len()));
        self
    }

    /// Sets the weight-decay multiplier of biases outside norm layers.
    pub fn bias_decay_mult(mut self, mult: f64) -> Self {
        self.bias_decay_mult = Some(mult);
        self
    }

    /// Sets the weight-decay multiplier of norm layers' weights and biases.
    pub fn norm_decay_mult(mut self, mult: f64) -> Self {
        self.norm_decay_mult = Some(mult);
        self
    }

    /// Adds a module-name prefix that marks a norm layer.
    pub fn norm_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.norm_prefixes.push(prefix.into());
        self
    }

    fn is_norm(&self, name: &str) -> bool {
        let mut segments: Vec<&str> = name.split('.').collect();
        segments.pop(); // the parameter itself (weight / bias)
        segments
            .iter()
            .any(|s| self.norm_prefixes.iter().any(|p| s.starts_with(p.as_str())))
    }

    /// `(lr_mult, decay_mult)` of the parameter called `name`, recognised by its name.
    pub fn multipliers(&self, name: &str) -> (f64, f64) {
        self.multipliers_with_role(name, None)
    }

    /// `(lr_mult, decay_mult)` of the parameter called `name` whose role is `role` (custom
    /// keys first; then the role; without one, the name).
    pub fn multipliers_with_role(&self, name: &str, role: Option<ParamRole>) -> (f64, f64) {
        if let Some(rule) = self.rules.iter().find(|r| name.contains(r.key.as_str())) {
            return (rule.lr_mult, rule.decay_mult);
        }
        let (is_norm, is_bias) = match role {
            Some(role) => (
                matches!(role, ParamRole::Norm | ParamRole::Table),
                role == ParamRole::Bias,
            ),
            None => (self.is_norm(name), name.rsplit('.').next() == Some("bias")),
        };
        if is_bias
            && !is_norm
            && let Some(mult) = self.bias_decay_mult
        {
            return (1.0, mult);
        }
        if is_norm && let Some(mult) = self.norm_decay_mult {
            return (1.0, mult);
        }
        (1.0, 1.0)
    }

    /// One group per distinct `(lr_mult, decay_mult)`, in order of first appearance; the
    /// parameters keep their order within a group.
    pub fn build(&self, params: impl IntoIterator<Item = (String, Var)>) -> Vec<ParamGroup> {
        self.build_with_roles(params.into_iter().map(|(name, var)| (name, var, None)))
    }

    /// [`build`](Self::build) for parameters whose roles are known (`None`: by name).
    pub fn build_with_roles(
        &self,
        params: impl IntoIterator<Item = (String, Var, Option<ParamRole>)>,
    ) -> Vec<ParamGroup> {
        let mut groups: Vec<ParamGroup> = Vec::new();
        for (name, var, role) in params {
            let (lr_mult, decay_mult) = self.multipliers_with_role(&name, role);
            match groups
                .iter_mut()
                .find(|g| g.lr_mult == lr_mult && g.decay_mult == decay_mult)
            {
                Some(group) => group.params.push((name, var)),
                None => groups.push(
                    ParamGroup::new(vec![(name, var)])
                        .with_lr_mult(lr_mult)
                        .with_decay_mult(decay_mult),
                ),
            }
        }
        groups
    }
}
