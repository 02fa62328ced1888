# The Rust toolchain from fenix's bundled stable manifest (no network at evaluation), in step with
# rust-toolchain.toml: mkToolchain refuses to evaluate when the two disagree.
{ fenix }:
let
  pinned = (builtins.fromTOML (builtins.readFile ../rust-toolchain.toml)).toolchain.channel;
  # fenix's derivations carry the manifest's date as version; the release number is in the URLs
  # of the manifest it bundles (".../rustc-1.95.0-x86_64-unknown-linux-gnu.tar.gz").
  manifest = builtins.fromJSON (builtins.readFile "${fenix}/data/stable.json");
  rustcUrl = manifest.pkg.rustc.target.x86_64-unknown-linux-gnu.url;
  fenixStable = builtins.head (builtins.match ".*/rustc-([0-9.]+)-x86_64-unknown-linux-gnu.*" rustcUrl);
in
{
  /**
    The toolchain that runs on `pkgs`' host platform and compiles for its target platform: cargo,
    rustc, clippy and rustfmt of fenix's stable channel, plus the target's rust-std when the two
    differ (for example aarch64-unknown-linux-gnu on x86_64-linux).

    crane calls it once per spliced package set (crane lib/default.nix, `spliceToolchain`), and the
    cargo and rustc that build a cross package are the `pkgsBuildHost` one: nixpkgs makes that set
    the native stage with `stdenv.override { targetPlatform = crossSystem; }` (nixpkgs
    pkgs/stdenv/cross/default.nix, "Build tool Packages"), so only its *target* is aarch64, while
    crane sets CARGO_BUILD_TARGET to the cross set's host platform (crane
    lib/mkCrossToolchainEnv.nix). Hence the decision is on the target platform.

    # Arguments
    - `pkgs`: a nixpkgs package set: native, from `pkgsCross`, or one of its splices.
  */
  mkToolchain =
    pkgs:
    let
      inherit (pkgs.stdenv) hostPlatform targetPlatform;
      fenixPkgs =
        fenix.packages.${hostPlatform.system}
          or (throw "predictor: fenix has no toolchain for the platform ${hostPlatform.system}");
      inherit (fenixPkgs) stable;
      crossStd = pkgs.lib.optional (
        hostPlatform.rust.rustcTarget != targetPlatform.rust.rustcTarget
      ) fenixPkgs.targets.${targetPlatform.rust.rustcTarget}.stable.rust-std;
    in
    assert pkgs.lib.assertMsg (fenixStable == pinned)
      "predictor: rust-toolchain.toml pins Rust ${pinned}, but the locked fenix's stable channel is Rust ${fenixStable} (${manifest.date}); pin a fenix revision whose data/stable.json is ${pinned}, or change rust-toolchain.toml, so that they agree";
    fenixPkgs.combine (
      [
        stable.cargo
        stable.rustc
        stable.clippy
        stable.rustfmt
        stable.rust-std
      ]
      ++ crossStd
    );
}
