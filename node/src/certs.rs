//! `recd-node gen-certs`: a cluster CA and one certificate per node for mutual TLS on the
//! cluster port (docs/adr/0022), for development, tests and the container test. In
//! Kubernetes cert-manager issues them instead (deploy/k8s/certificate.yaml).
//!
//! Writes `ca.pem` (`ca-key.pem` beside it, to sign more later is not supported: run it
//! again for a new cluster) and `<node>.pem` / `<node>-key.pem` for each node, whose SANs
//! are the node's name plus every `--san`.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;

/// Writes a fresh CA and a certificate for each of `nodes` into `out`.
pub fn gen_certs(out: &Path, nodes: &[String], sans: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(!nodes.is_empty(), "name at least one --node");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "recd cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    write(out, "ca.pem", &ca_cert.pem())?;
    write(out, "ca-key.pem", &ca_key.serialize_pem())?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    for node in nodes {
        anyhow::ensure!(
            !node.is_empty()
                && node
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "--node {node:?}: letters, digits, '-' and '.' only"
        );
        let names: Vec<String> = std::iter::once(node.clone())
            .chain(sans.iter().cloned())
            .collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(out, &format!("{node}.pem"), &cert.pem())?;
        write(out, &format!("{node}-key.pem"), &key.serialize_pem())?;
    }
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
