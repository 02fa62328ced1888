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
    The toolchain that runs on `pkgs`' build platform and compiles for its host platform: cargo,
    rustc, clippy and rustfmt of fenix's stable channel, plus the host's rust-std when cross
    compiling (for example aarch64-unknown-linux-gnu from x86_64-linux).

    # Arguments
    - `pkgs`: a nixpkgs package set, native or from `pkgsCross`.
  */
  mkToolchain =
    pkgs:
    let
      inherit (pkgs.stdenv) buildPlatform hostPlatform;
      fenixPkgs =
        fenix.packages.${buildPlatform.system}
          or (throw "predictor: fenix has no toolchain for the build platform ${buildPlatform.system}");
      inherit (fenixPkgs) stable;
      hostTriple = hostPlatform.rust.rustcTarget;
      crossStd = pkgs.lib.optional (
        buildPlatform.system != hostPlatform.system
      ) fenixPkgs.targets.${hostTriple}.stable.rust-std;
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
