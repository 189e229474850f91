# NixOS module: Hive as systemd services.
#   imports = [ hive.nixosModules.default ];
#   services.hive = { enable = true; dashboard.addr = "127.0.0.1:8000"; };
# State: /var/lib/hive (HIVE_HOME). Runtime: /run/hive, kept across restarts
# (RuntimeDirectoryPreserve) because agents' bind sources and sockets live there.
{ self }:
{ config, lib, pkgs, ... }:
let
  cfg = config.services.hive;
  inherit (lib) mkOption mkEnableOption mkIf types;
  hivePkg = cfg.package;
  home = "/var/lib/hive";
  natsUrl = if cfg.nats.enable then "nats://127.0.0.1:${toString cfg.nats.port}" else cfg.nats.url;

  serviceOpts = name: port: {
    enable = mkOption { type = types.bool; default = true; description = "Run hive-${name}."; };
    metricsAddr = mkOption {
      type = types.str;
      default = "127.0.0.1:${toString port}";
      description = "HIVE_METRICS_ADDR of hive-${name} (Prometheus scrapes it).";
    };
    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Extra environment of hive-${name}.";
    };
  };

  hardening = {
    NoNewPrivileges = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    RestrictSUIDSGID = true;
    RestrictRealtime = true;
    RestrictNamespaces = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = false; # node (the agent CLI) JITs
    SystemCallArchitectures = "native";
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
    CapabilityBoundingSet = "";
    UMask = "0077";
    ReadWritePaths = [ home ];
  };

  common = name: extra: {
    description = "Hive ${name}";
    wantedBy = [ "hive.target" ];
    partOf = [ "hive.target" ];
    after = [ "network-online.target" "hive-nats.service" ];
    wants = [ "network-online.target" ];
    requires = lib.optional cfg.nats.enable "hive-nats.service";
    environment = {
      HIVE_HOME = home;
      HIVE_NATS_URL = natsUrl;
      HIVE_NATS_CREDS = "${home}/nats/creds/svc_${name}.env";
      HIVE_LOG_LEVEL = cfg.logLevel;
    } // extra;
    serviceConfig = hardening // {
      ExecStart = "${hivePkg}/bin/hive-${name}";
      User = cfg.user;
      Group = cfg.group;
      StateDirectory = "hive";
      StateDirectoryMode = "0700";
      Restart = "always";
      RestartSec = 2;
      TimeoutStopSec = 15;
    };
  };
in
{
  options.services.hive = {
    enable = mkEnableOption "Hive, a control plane for swarms of LLM coding agents";
    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.system}.hive;
      description = "Python environment with hivewire and every Hive service.";
    };
    user = mkOption { type = types.str; default = "hive"; };
    group = mkOption { type = types.str; default = "hive"; };
    logLevel = mkOption { type = types.enum [ "debug" "info" "warning" "error" ]; default = "info"; };

    nats = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run a local nats-server (JetStream, auth from `hive nats-config`). Off: use nats.url.";
      };
      port = mkOption { type = types.port; default = 4222; };
      url = mkOption {
        type = types.str;
        default = "nats://127.0.0.1:4222";
        description = "HIVE_NATS_URL when nats.enable is false; several servers comma-separated (a cluster).";
      };
    };

    broker = serviceOpts "broker" 9411;
    deployer = serviceOpts "deployer" 9412 // {
      runtime = mkOption {
        type = types.enum [ "process" "bwrap" "podman" "nixos-container" ];
        default = "bwrap";
        description = ''
          HIVE_DEPLOYER_RUNTIME. bwrap (default): harnesses on the host, every agent CLI turn in a
          bubblewrap sandbox. process runs agents unconfined and also needs
          HIVE_ALLOW_UNCONFINED = "1" in deployer.environment.
        '';
      };
    };
    backup = serviceOpts "backup" 9413;
    dashboard = serviceOpts "dashboard" 0 // {
      addr = mkOption { type = types.str; default = "127.0.0.1:8000"; description = "HIVE_DASHBOARD_ADDR."; };
      operatorTokenFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "File holding HIVE_OPERATOR_TOKEN (else ${home}/operator.token is created).";
      };
    };
  };

  config = mkIf cfg.enable {
    users.users.${cfg.user} = { isSystemUser = true; group = cfg.group; home = home; };
    users.groups.${cfg.group} = { };

    # The source tree, so the deployer's meta flake can import this flake's agent
    # base modules (HIVE_DEPLOYER_BASE_FLAKE = path:/etc/hive?dir=nix).
    environment.etc."hive".source = ../.;
    environment.systemPackages = [ hivePkg ];

    systemd.targets.hive = { description = "Hive"; wantedBy = [ "multi-user.target" ]; };

    # Users, permissions and credentials; idempotent, keeps passwords.
    systemd.services.hive-nats-config = {
      description = "Hive NATS auth config";
      wantedBy = [ "hive.target" ];
      before = [ "hive-nats.service" ];
      environment.HIVE_HOME = home;
      serviceConfig = hardening // {
        Type = "oneshot";
        RemainAfterExit = true;
        User = cfg.user;
        Group = cfg.group;
        StateDirectory = "hive";
        ExecStart = "${hivePkg}/bin/hive nats-config --no-reload";
      };
    };

    systemd.services.hive-nats = mkIf cfg.nats.enable {
      description = "Hive NATS server";
      wantedBy = [ "hive.target" ];
      partOf = [ "hive.target" ];
      requires = [ "hive-nats-config.service" ];
      after = [ "hive-nats-config.service" "network.target" ];
      serviceConfig = hardening // {
        ExecStart = "${pkgs.nats-server}/bin/nats-server -c ${home}/nats/nats-server.conf -js -sd ${home}/run/nats/jetstream -a 127.0.0.1 -p ${toString cfg.nats.port}";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        User = cfg.user;
        Group = cfg.group;
        StateDirectory = "hive";
        Restart = "always";
        LimitNOFILE = 65536;
      };
    };

    systemd.services.hive-broker = mkIf cfg.broker.enable (common "broker"
      ({ HIVE_METRICS_ADDR = cfg.broker.metricsAddr; } // cfg.broker.environment));

    systemd.services.hive-backup = mkIf cfg.backup.enable (common "backup"
      ({ HIVE_METRICS_ADDR = cfg.backup.metricsAddr; } // cfg.backup.environment));

    systemd.services.hive-dashboard = mkIf cfg.dashboard.enable (lib.recursiveUpdate
      (common "dashboard" ({ HIVE_DASHBOARD_ADDR = cfg.dashboard.addr; } // cfg.dashboard.environment))
      {
        serviceConfig.LoadCredential = lib.optional (cfg.dashboard.operatorTokenFile != null)
          "operator-token:${cfg.dashboard.operatorTokenFile}";
      });

    # The deployer starts agents (nixos-container / podman / bwrap), so it gets
    # the privileges that needs and a preserved runtime dir (agents outlive a restart).
    systemd.services.hive-deployer = mkIf cfg.deployer.enable (lib.recursiveUpdate
      (common "deployer" ({
        HIVE_METRICS_ADDR = cfg.deployer.metricsAddr;
        HIVE_DEPLOYER_RUNTIME = cfg.deployer.runtime;
        HIVE_DEPLOYER_BASE_FLAKE = "path:/etc/hive?dir=nix";
      } // cfg.deployer.environment))
      {
        path = [ pkgs.git pkgs.nix pkgs.bubblewrap pkgs.nixos-container pkgs.util-linux ];
        serviceConfig = {
          RuntimeDirectory = "hive";
          RuntimeDirectoryMode = "0750";
          RuntimeDirectoryPreserve = "yes";
          # nixos-container / podman need root; bwrap/process do not.
          User = if lib.elem cfg.deployer.runtime [ "nixos-container" "podman" ] then "root" else cfg.user;
          CapabilityBoundingSet = lib.mkForce (if cfg.deployer.runtime == "nixos-container"
            then [ "CAP_SYS_ADMIN" "CAP_NET_ADMIN" "CAP_SETUID" "CAP_SETGID" "CAP_CHOWN" "CAP_DAC_OVERRIDE" "CAP_FOWNER" "CAP_KILL" ]
            else [ "CAP_KILL" ]);
          RestrictNamespaces = false;
          ProtectSystem = lib.mkForce "full";
          ReadWritePaths = [ home "/run/hive" "/etc/nixos-containers" "/nix/var/nix" ];
          KillMode = "process"; # agents outlive a deployer restart
        };
      });
  };
}
