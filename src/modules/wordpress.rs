//! wordpress module (to be written).

use super::{Ctx, Services};
use crate::diag::Problem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the wordpress module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Settings {}

#[allow(unused)]
pub fn expand(s: &Settings, all: &mut Services, problems: &mut Vec<Problem>) {}

#[allow(unused)]
pub fn compile(s: &Settings, all: &Services, cx: &mut Ctx) {}
