//! The systemd unit `fuse-cdc-bridge systemd-unit` prints, filled in with this binary's path and
//! the config file, so a production install needs no hand-written unit.

/// The unit, for `binary` reading `config` and keeping state in `state_dir`.
pub fn unit(binary: &str, config: &str, state_dir: &str) -> String {
    format!(
        r#"# fuse-cdc-bridge: Fuse webhooks from PostgreSQL logical replication.
# Install: save as /etc/systemd/system/fuse-cdc-bridge.service, then
#   systemctl daemon-reload && systemctl enable --now fuse-cdc-bridge
[Unit]
Description=fuse-cdc-bridge (Fuse webhooks from PostgreSQL logical replication)
After=network-online.target postgresql.service
Wants=network-online.target

[Service]
Type=simple
ExecStart={binary} run --config {config}
# Secrets referenced as ${{NAME}} in the config come from here (mode 0600).
EnvironmentFile=-/etc/fuse-cdc-bridge/env
Environment=RUST_LOG=info
# run refuses to start on a definite problem (see `check`) and exits 0 after a graceful stop;
# SIGTERM lets in-flight webhooks finish.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=5s
DynamicUser=yes
StateDirectory={state_name}
StateDirectoryMode=0700
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes
MemoryDenyWriteExecute=yes

[Install]
WantedBy=multi-user.target
"#,
        state_name = state_dir
            .trim_end_matches('/')
            .strip_prefix("/var/lib/")
            .unwrap_or("fuse-cdc-bridge"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_the_binary_config_and_state_directory() {
        let unit = unit(
            "/usr/local/bin/fuse-cdc-bridge",
            "/etc/fuse-cdc-bridge/bridge.toml",
            "/var/lib/fuse-cdc-bridge",
        );
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/fuse-cdc-bridge run --config /etc/fuse-cdc-bridge/bridge.toml\n"
        ));
        assert!(unit.contains("StateDirectory=fuse-cdc-bridge\n"));
        assert!(unit.contains("# Secrets referenced as ${NAME} in the config"));
    }
}
