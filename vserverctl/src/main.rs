//! vserverctl: a thin varlink client of vserverd. It never touches the kernel.

mod cli;
mod docs;
mod exit;
mod render;

use clap::Parser;
use futures_util::{pin_mut, StreamExt};
use proto::client::ManagerProxy;
use proto::{GuestState, ManagerError};

use cli::{Cli, Command};
use exit::Failure;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::GenerateDocs { dir } = &cli.command {
        return match docs::generate(dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vserverctl: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vserverctl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            eprintln!("vserverctl: {f}");
            std::process::ExitCode::from(f.code())
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let mut conn = zlink::tokio::unix::connect(&cli.socket)
        .await
        .map_err(|e| Failure::Unreachable(cli.socket.clone(), e.to_string()))?;
    match cli.command {
        Command::List { out } => {
            let list = conn.list().await??;
            if out.json {
                render::json(&list);
            } else {
                print!("{}", render::list_table(&list));
            }
            Ok(0)
        }
        Command::Status { name, out } => {
            let st = conn.status(&name).await??;
            if out.json {
                render::json(&st);
            } else {
                print!("{}", render::status(&st));
            }
            Ok(if st.state == GuestState::Running {
                0
            } else {
                3
            })
        }
        Command::Running { name } => {
            let st = conn.status(&name).await??;
            Ok(if st.state == GuestState::Running {
                0
            } else {
                1
            })
        }
        Command::Check { name, out } => {
            let v = conn.validate(&name).await??;
            if out.json {
                render::json(&v);
            } else {
                for w in &v.warnings {
                    eprintln!("warning: {}", render::problem(w));
                }
                println!("{name}: configuration ok ({} warnings)", v.warnings.len());
            }
            Ok(0)
        }
        Command::Start { name, out } => {
            let s = conn.start(&name).await?;
            progress(s, out.json).await
        }
        Command::Stop { name, out } => {
            let s = conn.stop(&name).await?;
            progress(s, out.json).await
        }
        Command::Restart { name, out } => {
            let s = conn.restart(&name).await?;
            progress(s, out.json).await
        }
        Command::Exec { name, command, tty } => {
            let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            let s = conn.exec(&name, &command, &env, tty).await?;
            pin_mut!(s);
            while let Some(r) = s.next().await {
                let r = r??;
                if let Some(code) = r.exit_code {
                    return Ok(code.clamp(0, 255) as u8);
                }
            }
            Ok(0)
        }
        Command::Enter { name } => {
            let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            let s = conn.enter(&name, &env).await?;
            pin_mut!(s);
            while let Some(r) = s.next().await {
                let r = r??;
                if let Some(code) = r.exit_code {
                    return Ok(code.clamp(0, 255) as u8);
                }
            }
            Ok(0)
        }
        Command::Events { out } => {
            let s = conn.events().await?;
            pin_mut!(s);
            while let Some(ev) = s.next().await {
                let ev = ev??;
                if out.json {
                    render::json(&ev);
                } else {
                    println!("{} {} {}", ev.name, ev.kind, ev.message.unwrap_or_default());
                }
            }
            Ok(0)
        }
        Command::GenerateDocs { .. } => unreachable!("handled before connecting"),
    }
}

async fn progress(
    s: impl futures_util::Stream<Item = zlink::Result<Result<proto::Progress, ManagerError>>>,
    json: bool,
) -> Result<u8, Failure> {
    pin_mut!(s);
    while let Some(p) = s.next().await {
        let p = p??;
        if json {
            render::json(&p);
        } else {
            println!("{}: {}: {}", p.name, p.step, p.message);
        }
    }
    Ok(0)
}
