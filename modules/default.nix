# The flake's NixOS modules: `predictor` (the service, its logging and monitoring) and `default`,
# the same module. The flake's own server is the default package.
{ self }:
let
  predictor =
    { lib, pkgs, ... }:
    let
      inherit (pkgs.stdenv.hostPlatform) system;
    in
    {
      _class = "nixos";
      # Imported twice (as `default` and as `predictor`), it still counts once.
      key = "${toString ./.}#predictor";
      imports = [
        ./predictor.nix
        ./logging.nix
        ./monitoring.nix
      ];
      services.predictor.package = lib.mkDefault (
        self.packages.${system}.server
          or (throw "predictor: the flake builds no server for ${system} (only x86_64-linux and aarch64-linux); set services.predictor.package")
      );
    };
in
{
  inherit predictor;
  default = predictor;
}
