# The manager's base module: agentBase plus read-only views of the swarm
# (the manager sees /agents, /applied and /meta, read-only).
{ self }:
{ lib, ... }:
{
  imports = [ (import ./agent-base.nix { inherit self; }) ];
  hive.agent.manager = true;
  # The deployer bind-mounts agents/, applied/ and meta/ read-only into the
  # manager's container; nothing else differs from agentBase.
}
