//! KEDA's ScaledObject for a bundle: the Deployment scaled on the requests in flight, as
//! Prometheus reports them.

use serde_json::{json, Value};

use super::Plan;

impl Plan<'_> {
    /// KEDA's autoscaler for the Deployment: the requests in flight per replica (through
    /// Prometheus) and the CPU, whichever asks for more replicas. KEDA makes and owns the
    /// HorizontalPodAutoscaler itself.
    pub(super) fn scaled_object(&self, prometheus: &str) -> Value {
        json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": self.metadata(),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicaCount": self.options.min_replicas,
                "maxReplicaCount": self.options.max_replicas,
                "triggers": [
                    {
                        "type": "prometheus",
                        // The sum over the pods, divided by the replicas against the threshold.
                        "metricType": "AverageValue",
                        "metadata": {
                            "serverAddress": prometheus,
                            "query": self.in_flight_query(),
                            "threshold": self.options.target_in_flight.to_string(),
                        },
                    },
                    {
                        "type": "cpu",
                        "metricType": "Utilization",
                        "metadata": {"value": self.options.target_cpu_percent.to_string()},
                    },
                ],
            },
        })
    }
}
