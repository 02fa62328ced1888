# services.predictor.instances.<name>: many predictors on one host, each its own hardened systemd
# unit `predictor-<name>` running `predictor serve` on the bundles it is given, on listening sockets
# that socket units `predictor-<name>-{http,grpc,metrics}-<port>` hold across restarts.
{
  config,
  lib,
  utils,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.predictor;
  instances = lib.filterAttrs (_: instance: instance.enable) cfg.instances;

  # A bundle is a derivation from lib.mkBundle: `predictor check` passed at build time, and its
  # `.info` (name, version, model hash) is known to Nix.
  bundleType = types.addCheck types.package (bundle: bundle ? info) // {
    description = "predictor bundle (lib.mkBundle, or the flake's packages.<system>.predictor-<name>-bundle)";
  };
  portType = types.ints.between 1 65535;
  # The listeners, each a socket unit whose FileDescriptorName the server knows it by, and the
  # option of its port.
  listeners = {
    http = "port";
    grpc = "grpcPort";
    metrics = "metricsPort";
  };
  portOptions = lib.attrValues listeners;
  # Named with the port too: a port that changes is another socket unit, which a switch starts
  # (and stops the old one), where a changed unit of the same name would keep its old socket.
  socketUnit = name: instance: listener: "predictor-${name}-${listener}-${toString instance.${listeners.${listener}}}";

  # The serve flags this module sets, by flag name: the one place that names them.
  # Not the address and ports: the socket units listen, and pass their sockets to the server.
  serveFlags = instance: {
    inherit (instance) threads;
    instances = instance.modelInstances;
    log-format = instance.logFormat;
    drain-timeout-seconds = instance.drainTimeoutSeconds;
    # Off (no flag) at rate 0; on, its lines go to stdout, the journal, beside the server's log.
    prediction-log-rate = if instance.predictionLog.rate > 0 then instance.predictionLog.rate else null;
    prediction-log-inputs = if instance.predictionLog.rate > 0 then instance.predictionLog.inputs else null;
  };
  # `--flag value`, two arguments, for each flag given (null: not given).
  toArgs = lib.cli.toCommandLine (flag: {
    option = "--${flag}";
    sep = null;
    explicitBool = false;
  });

  execStart =
    instance:
    lib.concatStringsSep " " (
      [
        (utils.escapeSystemdExecArgs (
          [
            (lib.getExe cfg.package)
            "serve"
          ]
          ++ toArgs (serveFlags instance)
          ++ instance.extraFlags
        ))
      ]
      # Not escaped: %d is systemd's credentials directory, where LoadCredential puts the file.
      ++ lib.optional (instance.authTokenFile != null) "--auth-token-file %d/auth-token"
      ++ [ (utils.escapeSystemdExecArgs instance.bundles) ]
    );

  # The flags the socket units stand for: given in extraFlags, they would not be used.
  listenerFlags = [
    "--address"
    "--port"
    "--grpc-port"
    "--metrics-port"
    "--single-port"
  ];

  # `ListenStream=` of an address and port (an IPv6 address in brackets).
  listenStream =
    address: port:
    if lib.hasInfix ":" address then "[${address}]:${toString port}" else "${address}:${toString port}";

  sockets =
    name: instance:
    lib.mapAttrs' (
      listener: option:
      lib.nameValuePair (socketUnit name instance listener) {
        description = "predictor ${name}: the ${listener} listener";
        wantedBy = [ "sockets.target" ];
        listenStreams = [ (listenStream instance.address instance.${option}) ];
        socketConfig = {
          FileDescriptorName = listener;
          Service = "predictor-${name}.service";
          # An address the host is given later (DHCP, networkd) can be listened on at boot.
          FreeBind = true;
        };
      }
    ) listeners;

  socketUnits =
    name: instance: map (listener: "${socketUnit name instance listener}.socket") (lib.attrNames listeners);

  unit =
    name: instance:
    lib.nameValuePair "predictor-${name}" {
      description = "predictor ${name}: ${
        lib.concatMapStringsSep ", " (
          bundle: "${bundle.info.name} ${bundle.info.version}"
        ) instance.bundles
      }";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ] ++ socketUnits name instance;
      wants = socketUnits name instance;
      # A switch that changes the unit restarts it, its sockets staying open: callers wait in their
      # backlog meanwhile. By default NixOS would stop a socket-activated unit and its sockets,
      # refusing every caller until the new server listens.
      stopIfChanged = false;
      serviceConfig = import ./hardening.nix // {
        # Started once the server says READY=1: every bundle loaded and its sample passed.
        Type = "notify";
        ExecStart = execStart instance;
        # The listening sockets, named http, grpc and metrics (FileDescriptorName=).
        Sockets = socketUnits name instance;
        DynamicUser = true;
        Restart = "on-failure";
        RestartSec = "2s";
        # SIGTERM starts the drain: requests in flight get --drain-timeout-seconds to finish, then
        # the server exits by itself; systemd's SIGKILL comes only after that, with a margin.
        TimeoutStopSec = instance.drainTimeoutSeconds + 10;
        LoadCredential = lib.optional (
          instance.authTokenFile != null
        ) "auth-token:${toString instance.authTokenFile}";

        # The hardening of every unit (hardening.nix), and more; every relaxation says why. No
        # capability, even for ports below 1024: systemd binds them (the socket units).
        DevicePolicy = "closed";
        MemoryDenyWriteExecute = true;
        PrivateUsers = true;
        # Relaxed: ONNX Runtime's cpuinfo reads /proc/cpuinfo (on aarch64, for the CPU's features).
        ProcSubset = "all";
        ProtectProc = "invisible";
        RemoveIPC = true;
        # The server takes its IP listeners from the socket units and makes no socket but the
        # datagram that tells systemd READY=1 and WATCHDOG=1 ($NOTIFY_SOCKET, AF_UNIX): no IP
        # socket, no name lookups.
        RestrictAddressFamilies = [ "AF_UNIX" ];
        # So it needs no network of its own: the passed sockets are the host's, accepted from a
        # namespace with only loopback (the notify socket is a path, reached through the files).
        PrivateNetwork = true;
        SystemCallErrorNumber = "EPERM";
      }
      // lib.optionalAttrs (instance.watchdogSeconds > 0) {
        # A server whose model runs stop ending (a run longer than the request timeout and a
        # period) stops saying WATCHDOG=1, and is restarted (Restart=on-failure).
        WatchdogSec = instance.watchdogSeconds;
      };
    };

  instanceOptions =
    { config, ... }:
    {
      options = {
        enable = lib.mkEnableOption "this predictor instance" // {
          default = true;
        };

        bundles = mkOption {
          type = types.nonEmptyListOf bundleType;
          example = lib.literalExpression "[ predictor.packages.\${pkgs.stdenv.hostPlatform.system}.predictor-iris-svc-bundle ]";
          description = ''
            The bundles this instance serves, in one process: validated bundle derivations, as the
            flake's `packages.<system>.predictor-<name>-bundle` or `lib.mkBundle` give them (each
            passed `predictor check` when it was built). This is what the OCI image
            `predictor-<name>` holds besides the server; on a NixOS host the server comes from
            {option}`services.predictor.package` and the bundles from here, with no container.
          '';
        };

        address = mkOption {
          type = types.str;
          default = "127.0.0.1";
          example = "0.0.0.0";
          description = ''
            IP address (v4 or v6) the HTTP, gRPC and metrics listeners bind to: the socket units
            `predictor-<name>-{http,grpc,metrics}-<port>` listen there and pass their sockets to the
            server. A changed address takes effect once those sockets are restarted
            (`systemctl restart predictor-<name>.service 'predictor-<name>-*.socket'`): NixOS does not
            restart changed socket units.
          '';
        };

        port = mkOption {
          type = portType;
          default = 8080;
          description = ''
            HTTP port: the REST API and the Open Inference Protocol v2 over REST (the socket unit
            `predictor-<name>-http-<port>`). Ports of
            all instances must be distinct: give each instance its own, e.g. 8080, 8090, 8100, and
            let the gRPC and metrics ports follow it.
          '';
        };

        grpcPort = mkOption {
          type = portType;
          default = config.port + 1;
          defaultText = lib.literalExpression "port + 1";
          description = "gRPC port: the Open Inference Protocol v2 over gRPC (the socket unit `predictor-<name>-grpc-<port>`).";
        };

        metricsPort = mkOption {
          type = portType;
          default = config.port + 2;
          defaultText = lib.literalExpression "port + 2";
          description = "Metrics port: `GET /metrics` for Prometheus (the socket unit `predictor-<name>-metrics-<port>`).";
        };

        logFormat = mkOption {
          type = types.enum [
            "json"
            "text"
            "auto"
          ];
          default = "json";
          description = ''
            Log format (`--log-format`): one JSON object per line into the journal by default, so
            that `journalctl -u predictor-<name> -o cat` gives lines a log shipper can parse.
          '';
        };

        threads = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = ''
            ONNX Runtime intra-op threads of each model instance (`--threads`); null: each
            bundle's `runtime.threads`, else the CPUs the unit may use divided by the instances
            of all its models.
          '';
        };

        modelInstances = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          description = ''
            Sessions of each model served by this unit, each with its worker, sharing the model's
            queue (`--instances`, Triton's instance groups); null: each bundle's
            `runtime.instances`, else 1.
          '';
        };

        watchdogSeconds = mkOption {
          type = types.ints.unsigned;
          default = 30;
          description = ''
            systemd's watchdog (`WatchdogSec`): the server says it lives twice a period while its
            models answer; once a run has lasted longer than the request timeout (30 s by default,
            `--request-timeout-seconds`) and this period, or a model's worker has stopped, it stops,
            and systemd restarts the unit. 0: no watchdog.
          '';
        };

        drainTimeoutSeconds = mkOption {
          type = types.ints.unsigned;
          default = 30;
          description = ''
            Seconds requests in flight may take to finish after SIGTERM (`--drain-timeout-seconds`).
            The unit's `TimeoutStopSec` follows it.
          '';
        };

        authTokenFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          example = "/run/secrets/predictor-tokens";
          description = ''
            File of bearer tokens, one per line: when set, every request but the health probes
            needs `Authorization: Bearer <token>`. systemd hands the file to the unit as the
            credential `auth-token` (`LoadCredential`), so it may stay readable by root only; give
            a path outside the Nix store (for example from sops-nix or agenix), as the store is
            readable by everyone.
          '';
        };

        predictionLog = {
          rate = mkOption {
            type = types.numbers.between 0 1;
            default = 0;
            example = 0.01;
            description = ''
              Share of inferences recorded in the prediction log (`--prediction-log-rate`): one
              JSON line each (`"type":"prediction"`, request id, model, version, inputs, outputs,
              duration) in the journal beside the server's own lines; 0: none.
              `predictionLog.shipping.command` sends them on, apart from the log.
            '';
          };
          inputs = mkOption {
            type = types.enum [
              "include"
              "redact"
            ];
            default = "include";
            description = "`redact`: the log keeps the inputs' datatype and shape only (`--prediction-log-inputs`).";
          };
        };

        extraFlags = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "--max-queued-requests"
            "128"
            "--log"
            "info,predictor=debug"
          ];
          description = ''
            More `predictor serve` flags (see `predictor serve --help`), passed as they are; not
            those the options above set.
          '';
        };

        openFirewall = mkOption {
          type = types.bool;
          default = false;
          description = "Open the HTTP, gRPC and metrics ports of this instance in the firewall.";
        };
      };
    };
in
{
  options.services.predictor = {
    package = mkOption {
      type = types.package;
      defaultText = lib.literalExpression "predictor.packages.\${pkgs.stdenv.hostPlatform.system}.server";
      description = ''
        The `predictor` server every instance runs. The flake's module sets it to the flake's own
        server, the one its checks test, with the ONNX Runtime of the flake's nixpkgs.
      '';
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceOptions);
      default = { };
      example = lib.literalExpression ''
        {
          iris-svc.bundles = [ predictor.packages.''${system}.predictor-iris-svc-bundle ];
          digits-logreg = {
            bundles = [ predictor.packages.''${system}.predictor-digits-logreg-bundle ];
            port = 8090;
          };
        }
      '';
      description = ''
        Predictor instances, each a systemd unit `predictor-<name>` serving its bundles on its own
        ports.
      '';
    };
  };

  config = lib.mkIf (instances != { }) {
    assertions =
      let
        uses = lib.concatLists (
          lib.mapAttrsToList (
            name: instance:
            map (option: {
              port = instance.${option};
              use = "services.predictor.instances.${name}.${option}";
            }) portOptions
          ) instances
        );
        collisions = lib.filterAttrs (_: same: builtins.length same > 1) (
          lib.groupBy (use: toString use.port) uses
        );
      in
      [
        {
          assertion = collisions == { };
          message = "services.predictor: every instance needs ports of its own, but ${
            lib.concatStringsSep "; " (
              lib.mapAttrsToList (
                port: same: "port ${port} is ${lib.concatMapStringsSep " and " (use: use.use) same}"
              ) collisions
            )
          }. Set services.predictor.instances.<name>.port (gRPC and metrics follow it) to e.g. 8080, 8090, 8100.";
        }
      ]
      ++ lib.concatLists (
        lib.mapAttrsToList (name: instance: [
          {
            assertion = !lib.any (flag: lib.elem flag listenerFlags) instance.extraFlags;
            message = "services.predictor.instances.${name}.extraFlags: ${
              lib.concatStringsSep " " (lib.filter (flag: lib.elem flag listenerFlags) instance.extraFlags)
            } would not be used: systemd listens for the server (socket units); set the instance's address, port, grpcPort and metricsPort instead.";
          }
          {
            assertion = builtins.match "[a-z0-9][a-z0-9._-]*" name != null;
            message = "services.predictor.instances.${name}: the name must match [a-z0-9][a-z0-9._-]* (it names the unit predictor-${name} and the Prometheus job).";
          }
          {
            assertion =
              instance.authTokenFile == null
              || !(builtins.isPath instance.authTokenFile || lib.hasPrefix builtins.storeDir instance.authTokenFile);
            message = "services.predictor.instances.${name}.authTokenFile: ${toString instance.authTokenFile} is (or would be copied) in the Nix store, which everyone can read; give the path of a file outside it as a string, e.g. \"/run/secrets/predictor-tokens\".";
          }
        ]) instances
      );

    warnings = lib.concatLists (
      lib.mapAttrsToList (
        name: instance:
        lib.optional (
          instance.openFirewall
          && lib.elem instance.address [
            "127.0.0.1"
            "::1"
          ]
        ) "services.predictor.instances.${name}.openFirewall opens its ports, but it listens on ${instance.address} only; set its address (e.g. \"0.0.0.0\") to be reachable."
      ) instances
    );

    systemd.services = lib.mapAttrs' unit instances;
    systemd.sockets = lib.concatMapAttrs sockets instances;

    networking.firewall.allowedTCPPorts = lib.concatLists (
      lib.mapAttrsToList (
        _: instance:
        lib.optionals instance.openFirewall (map (option: instance.${option}) portOptions)
      ) instances
    );
  };
}
