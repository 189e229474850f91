{
  description = "Hive: a control plane for swarms of LLM coding agents (services, NixOS module, agent base modules)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs, ... }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # packages.<system>.{hivewire,hive-broker,...,hive}: `hive` bundles every service.
      # Use this flake as `git+https://...?dir=nix` (or path:/etc/hive?dir=nix): the
      # whole repository is its source tree, so `../.` is the Python source.
      packages = forAllSystems (pkgs: import ./packages.nix { inherit pkgs; src = ../.; });

      # The host: `imports = [ hive.nixosModules.default ]; services.hive.enable = true;`
      nixosModules.default = import ./module.nix { inherit self; };
      nixosModules.hive = self.nixosModules.default;

      # Imported by the deployer's rendered meta flake (HIVE_DEPLOYER_BASE_FLAKE; the
      # host module installs the tree at /etc/hive and sets path:/etc/hive?dir=nix):
      #   nixosConfigurations.<name>.modules = [ hive.nixosModules.agentBase ... ]
      nixosModules.agentBase = import ./agent-base.nix { inherit self; };
      nixosModules.managerBase = import ./manager-base.nix { inherit self; };

      checks = forAllSystems (pkgs: {
        parse = pkgs.runCommand "hive-nix-parse" { } ''
          for f in ${./.}/*.nix; do ${pkgs.nix}/bin/nix-instantiate --parse "$f" > /dev/null; done
          touch $out
        '';
      });
    };
}
