//! Regenerating a secret: what it changes, decided like every other change.
//!
//! Invariant: pure. `container secret regenerate NAME KEY` only records the request
//! (`containers/<name>/regenerate.json`, see `runtime::layout`); `plan` and `apply`
//! turn the recorded keys into changes here, so `plan` shows a regeneration before it
//! happens and `apply` carries it out like any other change: a new value, then every
//! rendered file that holds the secret is rewritten (and the services that use the
//! file reloaded or restarted, as for any changed file) and every init task whose
//! standard input holds it runs again (e.g. mysql's `ALTER USER … IDENTIFIED BY`).
//! A plan never holds a secret's value, so a new value is no difference between two
//! plans: without this step the diff could not see it.

use super::diff::{users_of, Change, ChangeOp, Changes, Effect, ResourceKind};
use super::types::Plan;
use std::collections::BTreeSet;

/// The changes that regenerating `keys` makes to a container running `plan`. Keys
/// the plan does not use are left out (a secret the spec no longer uses is not
/// regenerated; nothing would read the new value).
pub fn regenerations(plan: &Plan, keys: &BTreeSet<String>) -> Vec<Change> {
    let mut out = Vec::new();
    for key in keys.iter().filter(|k| plan.secrets.contains(*k)) {
        let mut effects = vec![Effect::RegenerateSecret(key.clone())];
        for (path, f) in &plan.files {
            if f.content.secrets().any(|s| s == key) {
                effects.push(Effect::WriteFile(path.clone()));
                effects.extend(users_of(plan, path));
            }
        }
        for (id, t) in &plan.init {
            if t.stdin.as_ref().is_some_and(|s| s.secrets().any(|s| s == key)) {
                effects.push(Effect::RunInit(id.clone()));
            }
        }
        effects.sort();
        effects.dedup();
        out.push(Change {
            op: ChangeOp::Update,
            kind: ResourceKind::Secret,
            name: key.clone(),
            summary: key.clone(),
            effects,
            fields: vec!["value: regenerated (asked for by `container secret regenerate`)".to_string()],
            diff: None,
            content: None,
        });
    }
    out
}

/// `changes` with the regenerations of `keys` added (see [`regenerations`]).
pub fn with_regenerations(mut changes: Changes, plan: &Plan, keys: &BTreeSet<String>) -> Changes {
    changes.changes.extend(regenerations(plan, keys));
    changes
}

/// The secrets `changes` regenerate.
pub fn regenerated(changes: &Changes) -> BTreeSet<String> {
    changes
        .changes
        .iter()
        .flat_map(|c| &c.effects)
        .filter_map(|e| match e {
            Effect::RegenerateSecret(k) => Some(k.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::test_plan;

    fn plan() -> Plan {
        test_plan(
            r#"
name = "x"
[[hooks]]
inline = '''
fn on_plan(plan) {
    plan.add_file("/etc/app/key", ["key=", secret("app-key"), "\n"], "0600", "root:root");
    plan.add_file("/etc/app/other", "no secret\n");
    plan.add_service("app", #{ command: ["/usr/bin/app"], uses: ["/etc/app/key"] });
    plan.add_service("idle", #{ command: ["/usr/bin/idle"] });
    plan
}
'''
"#,
        )
    }

    fn keys(k: &[&str]) -> BTreeSet<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_regenerated_secret_rewrites_its_files_and_restarts_their_users_only() {
        let p = plan();
        let c = regenerations(&p, &keys(&["app-key"]));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].op, c[0].kind, c[0].name.as_str()), (ChangeOp::Update, ResourceKind::Secret, "app-key"));
        assert_eq!(
            c[0].effects,
            vec![
                Effect::WriteFile("/etc/app/key".into()),
                Effect::RestartService("app".into()),
                Effect::RegenerateSecret("app-key".into()),
            ]
        );
    }

    #[test]
    fn a_secret_the_plan_does_not_use_is_not_regenerated() {
        assert!(regenerations(&plan(), &keys(&["gone"])).is_empty());
    }

    #[test]
    fn regenerated_names_what_changes_regenerate() {
        let p = plan();
        let changes = with_regenerations(crate::plan::diff(Some(&p), &p), &p, &keys(&["app-key", "gone"]));
        assert_eq!(changes.changes.len(), 1);
        assert_eq!(regenerated(&changes), keys(&["app-key"]));
        assert!(regenerated(&crate::plan::diff(Some(&p), &p)).is_empty());
    }

    #[test]
    fn an_init_task_fed_the_secret_runs_again() {
        let p = test_plan("name = \"x\"\n[services.sshd]\nroot_password = { secret = \"root-pw\" }\n");
        let c = regenerations(&p, &keys(&["root-pw"]));
        assert!(c[0].effects.iter().any(|e| matches!(e, Effect::RunInit(_))), "{:?}", c[0].effects);
    }
}
