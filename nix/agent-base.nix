# The base NixOS module of every agent container. The deployer's rendered meta
# flake (services/deployer/hive_deployer/repos.py, render_meta) builds
#   nixosConfigurations.<name> = nixpkgs.lib.nixosSystem {
#     modules = [ hive.nixosModules.agentBase                 # this file
#                 inputs."agent-<name>".nixosModules.default  # agents/<name>/config/agent.nix
#                 { hive.agent.name = "<name>"; hive.agent.deployed = "<tag>"; } ];
#   };
# with `hive` = HIVE_DEPLOYER_BASE_FLAKE (the host module installs this tree at
# /etc/hive and sets path:/etc/hive?dir=nix). It declares the options the agent's config may set and
# runs the harness for that one agent inside the container.
{ self }:
{ config, lib, pkgs, ... }:
let
  cfg = config.hive.agent;
  inherit (lib) mkOption types;
in
{
  options.hive.agent = {
    name = mkOption {
      type = types.strMatching "[a-z][a-z0-9-]{0,30}";
      description = "The agent's name (HIVE_AGENT); set by the meta flake.";
    };
    model = mkOption { type = types.str; default = "haiku"; description = "Default model (HIVE_MODEL_FILE wins)."; };
    deployed = mkOption {
      type = types.str;
      default = "";
      description = "The applied repo tag this build comes from (deployed/<id>); set by the meta flake.";
    };
    manager = mkOption { type = types.bool; default = false; description = "True for the manager (managerBase)."; };
    natsUrl = mkOption { type = types.str; default = "nats://10.233.0.1:4222"; description = "HIVE_NATS_URL seen from the container."; };
    extraPackages = mkOption { type = types.listOf types.package; default = [ ]; description = "Tools the agent may use."; };
    environment = mkOption { type = types.attrsOf types.str; default = { }; description = "Extra env of the harness."; };
  };

  config = {
    boot.isContainer = true;
    networking.hostName = cfg.name;
    networking.useDHCP = false;
    system.stateVersion = "24.05";
    environment.systemPackages = [ pkgs.git pkgs.nodejs ] ++ cfg.extraPackages;

    # Bind mounts made by the deployer: /state (agents/<name>/state), /root/.claude
    # (agents/<name>/creds), /run/hive (socket + NATS credentials of this agent only).
    systemd.services.hive-harness = {
      description = "Hive harness for agent ${cfg.name}";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = [ pkgs.git pkgs.nodejs ] ++ cfg.extraPackages;
      environment = {
        HIVE_AGENT = cfg.name;
        HIVE_HOME = "/state/hive";
        HIVE_NATS_URL = cfg.natsUrl;
        # Written by the deployer at spawn (hivewire.natsauth.issue_agent), revoked at destroy.
        HIVE_NATS_CREDS = "/run/hive/nats.env";
        HIVE_EVENTS_DB = "/state/events.sqlite";
        HIVE_MODEL_FILE = "/state/model";
        HIVE_METRICS_ADDR = "0.0.0.0:9414";
        HIVE_DEPLOYED_REV = cfg.deployed;
      } // cfg.environment;
      serviceConfig = {
        ExecStart = "${self.packages.${pkgs.system}.hive}/bin/hive-harness";
        Restart = "always";
        RestartSec = 2;
        StateDirectory = "hive-agent";
        NoNewPrivileges = true;
        PrivateTmp = true;
      };
    };
  };
}
