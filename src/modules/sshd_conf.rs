//! Rendering and checking for the sshd module: sshd_config, authorized_keys files,
//! OpenSSH public key lines.

use super::{SshdSettings, KEYS_DIR};
use std::fmt::Write;

/// Key types accepted in authorized_keys (ssh-dss is disabled in OpenSSH 9).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

pub(super) fn sshd_config(s: &SshdSettings, host_keys: &[String]) -> String {
    let mut out = String::from("# Rendered by container (sshd module).\n");
    let _ = writeln!(out, "Port {}", s.port.0);
    for a in &s.listen_addresses {
        let _ = writeln!(out, "ListenAddress {a}");
    }
    for k in host_keys {
        let _ = writeln!(out, "HostKey {k}");
    }
    let _ = writeln!(out, "PermitRootLogin {}", s.permit_root_login.keyword());
    out.push_str("PubkeyAuthentication yes\n");
    let _ = writeln!(out, "PasswordAuthentication {}", if s.password_authentication { "yes" } else { "no" });
    out.push_str(
        "PermitEmptyPasswords no\n\
         KbdInteractiveAuthentication no\n\
         # No PAM in a minimal container: passwords are checked against /etc/shadow.\n\
         UsePAM no\n",
    );
    let _ = writeln!(out, "AuthorizedKeysFile {KEYS_DIR}/%u");
    out.push_str(
        "# The supervisor tracks the process; the root filesystem is read-only.\n\
         PidFile none\n\
         LogLevel INFO\n\
         Subsystem sftp /usr/lib/openssh/sftp-server\n",
    );
    out
}

pub(super) fn keys_file(user: &str, keys: &[String]) -> String {
    let mut out = format!("# Rendered by container (sshd module): keys of {user}.\n");
    for k in keys {
        out.push_str(k.trim());
        out.push('\n');
    }
    out
}

/// Check one OpenSSH public key line: known type, base64 blob that names the same type.
pub fn check_public_key(line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.chars().any(|c| c.is_control()) {
        return Err("a key is a single line (no line breaks or control characters)".into());
    }
    let mut parts = line.split_whitespace();
    let kind = parts.next().ok_or("the key is empty")?;
    if !KEY_TYPES.contains(&kind) {
        return Err(format!("unknown key type `{kind}`"));
    }
    let blob = parts.next().ok_or_else(|| format!("`{kind}` is not followed by the key data"))?;
    let data = base64_decode(blob).ok_or("the key data is not valid base64")?;
    // The blob is a sequence of SSH strings (u32 length, bytes): the type, then the key.
    let mut fields = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let n = rest.get(..4).map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
        match n.and_then(|n| rest.get(4..4 + n)) {
            Some(f) => {
                fields.push(f);
                rest = &rest[4 + f.len()..];
            }
            None => return Err("the key data is not an OpenSSH public key (cut short?)".into()),
        }
    }
    let named = fields.first().map(|f| String::from_utf8_lossy(f).into_owned()).unwrap_or_default();
    if named != kind {
        return Err(if KEY_TYPES.contains(&named.as_str()) {
            format!("the key data is a `{named}` key, not `{kind}`")
        } else {
            "the key data is not an OpenSSH public key".into()
        });
    }
    let want = match kind {
        "ssh-ed25519" => 2,
        "sk-ecdsa-sha2-nistp256@openssh.com" => 4,
        _ => 3,
    };
    if fields.len() != want || fields[1..].iter().any(|f| f.is_empty()) {
        return Err("the key data is incomplete (cut short?)".into());
    }
    Ok(())
}

/// Standard base64 with `=` padding; None when malformed.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return None;
    }
    let body = s.trim_end_matches('=').as_bytes();
    if bytes.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBM+FDzQKMFb7PCfI36rU3icZw2wsSEzCz9xqVOKpFRIas1jYjj77z6Gpvz1+9f98w2Mo8bMog4+9FDNsnYsGxQ= e";

    #[test]
    fn base64_decoder_matches_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("a$==").is_none());
        assert!(base64_decode("abc").is_none());
        assert!(check_public_key(EC).is_ok());
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC3ttYo7nitrtwleEw18ezNw8gzW44gqZnqS0vpx47MCUvY5qUnweOkA2C/y8H8FY8jx\
                   Zeo5rhO4UIBg1+ib+8AlA/nI9tmjQ99MfZNql+aLWep2G7RB0ZKdi51uOFpPzT84pwKPQWXhpRjShWHH6HNWMbSh79v68pnAz76IFMLvw== r";
        assert_eq!(check_public_key(rsa), Ok(()));
        assert!(check_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5").is_err());
    }
}
