//! KServe's objects for a bundle: this template's ServingRuntime and the bundle's InferenceService,
//! in KServe's Standard mode or, on one port, its Serverless mode.

use serde_json::{json, Value};

use super::{object, Plan, MODEL_FORMAT, SERVERLESS_RUNTIME, SERVING_RUNTIME};
use crate::bundle::SCHEMA_VERSION;
use crate::defaults::{self, METRICS_PATH};

impl Plan<'_> {
    /// This template's runtime, the same for every bundle: the server's container without an
    /// image, which each InferenceService gives. It speaks the Open Inference Protocol v2 over
    /// REST and gRPC.
    pub(super) fn serving_runtime(&self) -> Value {
        let mut annotations = self.scrape_annotations();
        // KServe's own keys for the metrics endpoint, as its Triton runtime declares them.
        annotations["prometheus.kserve.io/port"] = json!(self.metrics_port().to_string());
        annotations["prometheus.kserve.io/path"] = json!(METRICS_PATH);
        let serverless = self.options.serverless;
        let name = self.runtime_name();
        // Both runtimes serve the same format: only the Standard one is chosen for an
        // InferenceService that names none, so that KServe never has two to choose from.
        let format = if serverless {
            json!({"name": MODEL_FORMAT, "version": SCHEMA_VERSION.to_string(), "autoSelect": false})
        } else {
            json!({
                "name": MODEL_FORMAT,
                "version": SCHEMA_VERSION.to_string(),
                "autoSelect": true,
                "priority": 1,
            })
        };
        json!({
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/name": name,
                    "app.kubernetes.io/version": env!("CARGO_PKG_VERSION"),
                    "app.kubernetes.io/part-of": "predictor",
                },
            },
            "spec": {
                "annotations": annotations,
                "supportedModelFormats": [format],
                "protocolVersions": ["v2", "grpc-v2"],
                "multiModel": false,
                // KServe merges each InferenceService's model container into the one of this
                // name.
                "containers": [Self::server_container("kserve-container", serverless)],
            },
        })
    }

    pub(super) fn runtime_name(&self) -> &'static str {
        if self.options.serverless {
            SERVERLESS_RUNTIME
        } else {
            SERVING_RUNTIME
        }
    }

    pub(super) fn inference_service(&self) -> Value {
        let mut model = self.bundle_container();
        model.insert(
            "modelFormat".into(),
            json!({"name": MODEL_FORMAT, "version": SCHEMA_VERSION.to_string()}),
        );
        model.insert("runtime".into(), json!(self.runtime_name()));
        model.insert("protocolVersion".into(), json!("v2"));
        let mut predictor = self.pod_settings();
        let mut metadata = self.metadata();
        if self.options.serverless {
            predictor.extend(object(json!({
                // Knative's autoscaler on requests in flight, as the server counts them; scale
                // to zero when the minimum is 0 (the activator holds requests meanwhile).
                "minReplicas": self.options.min_replicas,
                "maxReplicas": self.options.max_replicas,
                "scaleMetric": "concurrency",
                "scaleTarget": self.options.target_in_flight,
                // Never more at once than the server admits: the queue-proxy queues the rest
                // instead of the server refusing them with 503.
                "containerConcurrency": defaults::MAX_CONCURRENT_REQUESTS.get(),
            })));
            if let Some(percent) = self.options.canary_traffic_percent {
                predictor.insert("canaryTrafficPercent".into(), json!(percent));
            }
            metadata["annotations"] = json!({
                // A Knative Service: revisions, traffic split, scale to zero; one port.
                "serving.kserve.io/deploymentMode": "Serverless",
            });
        } else if let Some(prometheus) = &self.options.keda_prometheus_url {
            // KServe makes the KEDA ScaledObject from these, as the plain one above: the
            // requests in flight (KServe's threshold is the target's value, per replica) and CPU.
            predictor.extend(object(json!({
                "minReplicas": self.options.min_replicas,
                "maxReplicas": self.options.max_replicas,
                "autoScaling": {"metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {
                                "backend": "prometheus",
                                "serverAddress": prometheus,
                                "query": self.in_flight_query(),
                            },
                            "target": {"type": "Value", "value": self.options.target_in_flight.to_string()},
                        },
                    },
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": self.options.target_cpu_percent,
                            },
                        },
                    },
                ]},
            })));
            metadata["annotations"] = json!({
                "serving.kserve.io/deploymentMode": "Standard",
                "serving.kserve.io/autoscalerClass": "keda",
            });
        } else {
            predictor.extend(object(json!({
                "minReplicas": self.options.min_replicas,
                "maxReplicas": self.options.max_replicas,
                "scaleMetric": "cpu",
                "scaleTarget": self.options.target_cpu_percent,
            })));
            metadata["annotations"] = json!({
                // A Deployment, a Service and an HPA, as the plain manifests: several ports
                // (Knative allows one) and no Knative needed.
                "serving.kserve.io/deploymentMode": "Standard",
                "serving.kserve.io/autoscalerClass": "hpa",
            });
        }
        predictor.insert("model".into(), Value::Object(model));
        json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": {"predictor": predictor},
        })
    }
}
