# The unit files of the predictor units of a NixOS host (the instances, their log and prediction
# log shippers), written as NixOS writes them, and what each store path in them is: the input of
# scripts/rehearse-systemd. scripts/render-rehearsals evaluates this for nixosConfigurations.example.
#
# As nixpkgs' nixos/lib/systemd-lib.nix does it: serviceToUnit (Environment= lines first, each
# `toJSON "NAME=value"`, from systemd.globalEnvironment // environment, then serviceConfig),
# commonUnitText ([Unit] from unitConfig; [Install] WantedBy= when wantedBy is set), attrsToSection
# (a list is one line per element, true/false as such, everything else toString), X-RestartIfChanged
# and X-StopIfChanged when off; socketToUnit (ListenStream= after the [Socket] settings); and
# generateUnits' `<target>.wants/<unit>` links for wantedBy. A `script` is already serviceConfig.ExecStart: the
# path of makeJobScript's writeShellScriptBin, whose text is "set -e\n\n<script>\n" after the
# runtimeShell line.
{ nixosConfiguration }:
let
  inherit (nixosConfiguration) config pkgs;
  inherit (pkgs) lib;
  cfg = config.systemd;

  instances = lib.filterAttrs (_: instance: instance.enable) config.services.predictor.instances;
  unitNames = lib.concatLists (
    lib.mapAttrsToList (
      name: _:
      [ "predictor-${name}" ]
      ++ lib.filter (unit: cfg.services ? ${unit}) [
        "predictor-${name}-logs"
        "predictor-${name}-predictions"
      ]
    ) instances
  );
  services = lib.genAttrs unitNames (name: cfg.services.${name});
  # Each instance's listening sockets: the socket units that pass theirs to its service.
  sockets = lib.filterAttrs (
    _: socket:
    lib.elem (socket.socketConfig.Service or null) (
      map (instance: "predictor-${instance}.service") (lib.attrNames instances)
    )
  ) cfg.sockets;

  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;
  attrsToSection =
    as:
    lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          name: value: map (x: "${name}=${toOption x}\n") (if lib.isList value then value else [ value ])
        ) as
      )
    );
  serviceToUnit =
    def:
    let
      env = cfg.globalEnvironment // def.environment;
    in
    "[Unit]\n"
    + attrsToSection def.unitConfig
    + "\n[Service]\n"
    + lib.concatMapStrings (
      n: lib.optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${env.${n}}"}\n"
    ) (lib.attrNames env)
    + lib.optionalString (!def.restartIfChanged) "X-RestartIfChanged=false\n"
    + lib.optionalString (!def.stopIfChanged) "X-StopIfChanged=false\n"
    + attrsToSection def.serviceConfig
    + install def;
  install =
    def:
    lib.optionalString (def.wantedBy != [ ]) "\n[Install]\nWantedBy=${lib.concatStringsSep " " def.wantedBy}\n";
  # socketToUnit: [Socket] from socketConfig, then a ListenStream= line for each listenStreams.
  socketToUnit =
    def:
    "[Unit]\n"
    + attrsToSection def.unitConfig
    + "\n[Socket]\n"
    + attrsToSection def.socketConfig
    + lib.concatMapStrings (stream: "ListenStream=${stream}\n") def.listenStreams
    + install def;

  # makeJobScript's file for a `script` (the only job script these units have).
  jobScript = name: def: {
    path = lib.head (lib.splitString " " def.serviceConfig.ExecStart);
    text = "#!${pkgs.runtimeShell}\nset -e\n\n${def.script}\n";
    unit = "${name}.service";
  };

  bundles = lib.unique (lib.concatMap (instance: instance.bundles) (lib.attrValues instances));
  server = config.services.predictor.package;
in
{
  units =
    lib.mapAttrs' (name: def: lib.nameValuePair "${name}.service" (serviceToUnit def)) services
    // lib.mapAttrs' (name: def: lib.nameValuePair "${name}.socket" (socketToUnit def)) sockets;
  wantedBy =
    lib.mapAttrs' (name: def: lib.nameValuePair "${name}.service" def.wantedBy) services
    // lib.mapAttrs' (name: def: lib.nameValuePair "${name}.socket" def.wantedBy) sockets;
  scripts = map (name: jobScript name services.${name}) (
    lib.filter (name: services.${name}.script != "") unitNames
  );
  # The store paths the rehearsal must provide, besides packages it takes from Debian.
  server = {
    path = toString server;
    onnxruntime = "${lib.getLib server.onnxruntime}/lib/libonnxruntime.so";
  };
  bundles = map (bundle: {
    path = toString bundle;
    inherit (bundle.info) name version;
    # The folder in this repository: bundle.info.path is inside the flake's source.
    source = lib.head (builtins.match "${builtins.storeDir}/[^/]+/(.*)" (toString bundle.info.path));
  }) bundles;
  # Files the units read that a secrets manager would put there.
  credentials = lib.mapAttrsToList (name: instance: {
    unit = "predictor-${name}.service";
    path = toString instance.authTokenFile;
  }) (lib.filterAttrs (_: instance: instance.authTokenFile != null) instances);
}
