//! `polder token`: development keys and tokens, so a node with authentication can be tried
//! without an identity provider; and `polder audit verify`.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use polder_access::mint::{self, TokenRequest};

use crate::cli::{AuditCommand, KeygenArgs, MintArgs, TokenCommand};

/// Runs `polder token keygen` or `polder token mint`.
pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Keygen(args) => keygen(&args),
        TokenCommand::Mint(args) => {
            println!("{}", mint_token(&args)?);
            Ok(())
        }
    }
}

/// Runs `polder audit verify`: prints what it checked and what no signature covers; fails
/// naming the first broken record, or when records are unsigned without `--allow-unsigned`.
pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify(args) = command;
    let jwks = std::fs::read_to_string(&args.jwks)
        .with_context(|| format!("cannot read {}", args.jwks.display()))?;
    let key = polder_access::audit::verifying_key_from_jwks(&jwks)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.jwks.display()))?;
    let verified = polder_access::audit::verify(&args.log, Some(&key))?;
    let log = args.log.display();
    println!(
        "{log}: chain unbroken: {} records, last hash {}",
        verified.records,
        hex_of(&verified.last_hash)
    );
    match verified.signed_through {
        0 => println!(
            "  signed: nothing (no checkpoint verifies with {})",
            args.jwks.display()
        ),
        through => println!(
            "  signed: records 1-{through}, by {} checkpoints that verify with {}",
            verified.checkpoints,
            args.jwks.display()
        ),
    }
    let promised = verified
        .checkpoint_every
        .map_or("no interval promised".to_string(), |every| {
            format!("the last checkpoint promised the next within {every}")
        });
    println!(
        "  not yet signed: {} records after the last checkpoint ({promised})",
        verified.unsigned_tail
    );
    match verified.head {
        Some(seq) => println!("  head file: names checkpoint record {seq}, which the log reaches"),
        None => println!(
            "  head file: none (a log cut back to an earlier checkpoint is detected only by a head kept elsewhere)"
        ),
    }
    if let Some(problem) = verified.unproven() {
        if !args.allow_unsigned {
            anyhow::bail!(
                "{log} is not verified: {problem} (--allow-unsigned accepts such a log, checking only its chain)"
            );
        }
        eprintln!("polder: warning: {log}: {problem}; accepted with --allow-unsigned");
        println!(
            "{log}: intact as a chain only, UNSIGNED records accepted (--allow-unsigned): {} records, {} signed checkpoints, {} records after the last checkpoint",
            verified.records, verified.checkpoints, verified.unsigned_tail
        );
        return Ok(());
    }
    println!(
        "{log}: intact: {} records, {} signed checkpoints, {} records after the last checkpoint",
        verified.records, verified.checkpoints, verified.unsigned_tail
    );
    Ok(())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let (pem, jwks) = mint::generate_key(&args.kid).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let key_path = args.out.join("token-key.pem");
    let jwks_path = args.out.join("jwks.json");
    write_private(&key_path, pem.as_bytes())?;
    std::fs::write(&jwks_path, jwks)
        .with_context(|| format!("cannot write {}", jwks_path.display()))?;
    println!("private key: {}", key_path.display());
    println!("public JWKS: {}", jwks_path.display());
    Ok(())
}

/// Writes a private key readable by its owner only; an existing key is never overwritten.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (an existing key is kept)", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn mint_token(args: &MintArgs) -> anyhow::Result<String> {
    let algorithm = jsonwebtoken_algorithm(&args.alg)?;
    let key = std::fs::read(&args.key)
        .with_context(|| format!("cannot read the key {}", args.key.display()))?;
    let request = TokenRequest {
        subject: args.subject.clone(),
        issuer: args.issuer.clone(),
        audience: args.audience.clone(),
        groups: args.groups.clone(),
        roles: args.roles.clone(),
        organisation: args.org.clone(),
        purpose: args.purpose.clone(),
        ttl: args.ttl,
        kid: args.kid.clone(),
        algorithm,
    };
    mint::mint(&request, &key).map_err(anyhow::Error::msg)
}

fn jsonwebtoken_algorithm(name: &str) -> anyhow::Result<mint::Algorithm> {
    mint::Algorithm::from_str(name).map_err(|_| {
        anyhow::anyhow!("unknown algorithm '{name}': use EdDSA, RS256, RS384, RS512, PS256, PS384, PS512, ES256 or ES384")
    })
}
