//! nginx module (to be written).

use super::web::Site;
use super::{Ctx, Services};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the nginx module.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Settings {
    /// Web sites served.
    pub sites: Vec<Site>,
}

#[allow(unused)]
pub fn compile(s: &Settings, all: &Services, cx: &mut Ctx) {}
