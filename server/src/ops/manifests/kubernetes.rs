//! The plain Kubernetes objects of a bundle: its Deployment, its Service, and its
//! HorizontalPodAutoscaler (KEDA's ScaledObject instead is in [`super::keda`]).

use serde_json::{json, Value};

use super::{append_env, Plan, PORTS};

impl Plan<'_> {
    pub(super) fn deployment(&self) -> Value {
        let mut container = Self::server_container("predictor", false);
        let mut bundle = self.bundle_container();
        append_env(&mut container, &mut bundle);
        container.extend(bundle);
        container.insert("imagePullPolicy".into(), json!("IfNotPresent"));
        let mut pod = self.pod_settings();
        pod.insert("containers".into(), json!([container]));
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(),
            // No `replicas`: the HorizontalPodAutoscaler owns it.
            "spec": {
                "selector": {"matchLabels": self.selector},
                // A new version starts before an old one stops: no capacity lost in a rollout.
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": {
                    "metadata": {
                        "labels": self.labels,
                        "annotations": self.scrape_annotations(),
                    },
                    "spec": pod,
                },
            },
        })
    }

    pub(super) fn service(&self) -> Value {
        let protocol = |name: &str| {
            if name == "grpc" {
                "kubernetes.io/h2c"
            } else {
                "http"
            }
        };
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(),
            "spec": {
                "type": "ClusterIP",
                "selector": self.selector,
                "ports": PORTS.iter().map(|(name, port)| json!({
                    "name": name,
                    "port": port,
                    "targetPort": name,
                    "protocol": "TCP",
                    "appProtocol": protocol(name),
                })).collect::<Vec<_>>(),
            },
        })
    }

    pub(super) fn autoscaler(&self) -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": self.metadata(),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicas": self.options.min_replicas,
                "maxReplicas": self.options.max_replicas,
                "metrics": [{
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": self.options.target_cpu_percent,
                        },
                    },
                }],
            },
        })
    }
}
