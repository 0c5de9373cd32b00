//! `Ctx`: the only way modules add to a plan.
//!
//! Invariant: every addition goes through here, so clashes between modules (two
//! files at one path with different content, two services on one port, two mounts
//! on one target) are caught in one place and reported against the module's settings.
//! A path the user declared under `files` or `mounts` wins over a module's: that is
//! the escape hatch for replacing a rendered config or choosing where data lives.

use crate::diag::Problem;
use crate::vocab::kinds::MountKind;
use crate::vocab::path::Path;
use crate::vocab::plan::{port_key, BuildStep, FileRes, InitTask, MountRes, Plan, ServiceRes};
use crate::vocab::text::Text;
use crate::vocab::values::{Cidr, DeviceNode, Facts, Mode, Owner, Proto, SecretRef, SourcePath, Suite};

pub struct Ctx<'a> {
    pub plan: &'a mut Plan,
    problems: &'a mut Vec<Problem>,
    origin: String,
    suite: Suite,
}

impl<'a> Ctx<'a> {
    /// The suite modules render for is the plan's base's (`debian:<suite>`). For
    /// `base = "host"` nothing is read (the plan stays pure): modules assume
    /// `Suite::default()`, and a host running another release gets that release's
    /// paths wrong unless the spec's own `files` replace the rendered ones.
    pub fn new(plan: &'a mut Plan, problems: &'a mut Vec<Problem>) -> Self {
        let suite = plan.layer.base.suite().unwrap_or_default();
        Ctx { plan, problems, origin: "spec".into(), suite }
    }

    /// The Debian suite the container runs: modules render its package versions.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// What the suite ships (PHP, MariaDB, BIND, … versions).
    pub fn facts(&self) -> &'static Facts {
        self.suite.facts()
    }

    /// Attribute what follows to `module` (errors point at `services.<module>`).
    pub fn enter(&mut self, module: &str) {
        self.origin = module.to_string();
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Path of a field of the current module's settings, e.g. `sites[0].address`.
    pub fn path(&self, rel: &str) -> Path {
        let base = if self.origin == "spec" { String::new() } else { format!("services.{}", self.origin) };
        match (base.is_empty(), rel.is_empty()) {
            (true, _) => Path::parse(rel),
            (false, true) => Path::parse(&base),
            (false, false) if rel.starts_with('[') => Path::parse(&format!("{base}{rel}")),
            (false, false) => Path::parse(&format!("{base}.{rel}")),
        }
    }

    /// Report a problem with the field `rel` of the current module.
    pub fn error(&mut self, rel: &str, message: impl Into<String>, help: Option<&str>) {
        let mut p = Problem::new(message).at(self.path(rel));
        if let Some(h) = help {
            p = p.help(h);
        }
        self.problems.push(p);
    }

    /// Problems found elsewhere (module `expand`) that already carry their path.
    pub fn extend_problems(&mut self, problems: Vec<Problem>) {
        self.problems.extend(problems);
    }

    pub fn package(&mut self, name: &str) {
        self.plan.layer.packages.insert(name.to_string());
    }

    pub fn packages(&mut self, names: &[&str]) {
        for n in names {
            self.package(n);
        }
    }

    pub fn step(&mut self, step: BuildStep) {
        if !self.plan.layer.steps.contains(&step) {
            self.plan.layer.steps.push(step);
        }
    }

    pub fn device(&mut self, dev: DeviceNode) {
        self.plan.devices.insert(dev);
    }

    /// A `net.*` setting of the container's network namespace.
    pub fn sysctl(&mut self, key: &str, value: &str) {
        self.plan.network.sysctls.insert(key.to_string(), value.to_string());
    }

    /// Route an extra network to the container (e.g. a NAT64 prefix).
    pub fn route(&mut self, cidr: Cidr) {
        self.plan.network.prefixes.insert(cidr);
    }

    /// Register a secret and return its text reference.
    pub fn secret(&mut self, r: &SecretRef) -> Text {
        self.plan.secrets.insert(r.name().to_string());
        Text::new().secret(r.name())
    }

    /// A file with mode 0644 owned by root.
    pub fn file(&mut self, path: &str, content: impl Into<Text>) {
        self.file_with(path, content, Mode(0o644), "root:root");
    }

    pub fn file_with(&mut self, path: &str, content: impl Into<Text>, mode: Mode, owner: &str) {
        let Some(owner) = self.owner(owner) else { return };
        let res = FileRes { content: content.into(), mode, owner, origin: self.origin.clone() };
        if let Some(old) = self.plan.files.get(path) {
            // The user's own `files` entry replaces what a module renders there.
            if old.origin == "spec" && self.origin != "spec" {
                return;
            }
            if old.content != res.content || old.mode != res.mode || old.owner != res.owner {
                let other = old.origin.clone();
                self.error(
                    "",
                    format!("file {path} is rendered by both {other} and {} with different content", self.origin),
                    Some("give one of them another path"),
                );
            }
            return;
        }
        self.plan.files.insert(path.to_string(), res);
    }

    fn mount(&mut self, target: &str, res: MountRes) {
        if let Some(old) = self.plan.mounts.get(target) {
            // The user's own `mounts` entry replaces the module's choice.
            if old.origin == "spec" && self.origin != "spec" {
                return;
            }
            if *old != res {
                let other = old.origin.clone();
                self.error(
                    "",
                    format!("mount target {target} is used by both {other} and {}", self.origin),
                    Some("each mount target may appear once"),
                );
            }
            return;
        }
        self.plan.mounts.insert(target.to_string(), res);
    }

    /// An owner a module built from its settings ("user:group"); a bad one is the
    /// module's settings' problem, reported here at plan time.
    fn owner(&mut self, owner: &str) -> Option<Owner> {
        match Owner::parse(owner) {
            Ok(o) => Some(o),
            Err(e) => {
                self.error("", e, None);
                None
            }
        }
    }

    /// A persistent volume (`source` relative to the container's volume folder).
    pub fn volume(&mut self, target: &str, source: &str, owner: Option<&str>, mode: Option<Mode>) {
        let source = match crate::vocab::values::volume_source_problem(source) {
            None => SourcePath(source.to_string()),
            Some(e) => return self.error("", e, None),
        };
        let owner = match owner {
            Some(o) => match self.owner(o) {
                Some(o) => Some(o),
                None => return,
            },
            None => None,
        };
        let res = MountRes {
            kind: MountKind::Volume,
            source: Some(source),
            size: None,
            read_only: false,
            owner,
            mode,
            origin: self.origin.clone(),
        };
        self.mount(target, res);
    }

    /// A tmpfs, empty at every start.
    pub fn tmpfs(&mut self, target: &str, size: Option<u64>, owner: Option<&str>, mode: Option<Mode>) {
        let owner = match owner {
            Some(o) => match self.owner(o) {
                Some(o) => Some(o),
                None => return,
            },
            None => None,
        };
        let res = MountRes {
            kind: MountKind::Tmpfs,
            source: None,
            size,
            read_only: false,
            owner,
            mode,
            origin: self.origin.clone(),
        };
        self.mount(target, res);
    }

    /// A supervised program. Names are unique across the container.
    pub fn service(&mut self, name: &str, mut svc: ServiceRes) {
        svc.origin = self.origin.clone();
        if let Some(old) = self.plan.services.get(name) {
            let other = old.origin.clone();
            self.error(
                "",
                format!("service `{name}` is defined by both {other} and {}", self.origin),
                Some("rename one of the processes"),
            );
            return;
        }
        self.plan.services.insert(name.to_string(), svc);
    }

    /// An idempotent init task, id unique across the container.
    pub fn init(&mut self, id: &str, mut task: InitTask) {
        task.origin = self.origin.clone();
        if self.plan.init.contains_key(id) {
            self.error("", format!("init task `{id}` is defined twice"), None);
            return;
        }
        self.plan.init.insert(id.to_string(), task);
    }

    /// Claim a listening port for `owner`; `rel` is the settings field naming it.
    /// [`Ctx::listen`] on the container's loopback only: said so, never offered as a
    /// way in.
    pub fn listen_loopback(&mut self, proto: Proto, port: u16, owner: &str, rel: &str) {
        self.listen(proto, port, owner, rel);
        self.plan.loopback_ports.insert(port_key(proto, port));
    }

    pub fn listen(&mut self, proto: Proto, port: u16, owner: &str, rel: &str) {
        let key = port_key(proto, port);
        match self.plan.ports.get(&key) {
            Some(old) if old != owner => {
                let msg = format!("port {key} is used by both {old} and {owner}");
                self.error(rel, msg, Some("two services cannot listen on one port: change one of them"));
            }
            Some(_) => {}
            None => {
                self.plan.ports.insert(key, owner.to_string());
            }
        }
    }
}
