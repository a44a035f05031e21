//! The network configurations handed to the plugins, built from the pod CIDR.
//!
//! Two networks, as containerd sets them up: `loopback` brings up `lo`, and
//! the pod network chains `bridge` with `host-local` IPAM for `eth0`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::cidr::PodCidr;

/// The CNI spec version we speak; Debian's v1.1.1 plugins top out at it.
pub(crate) const CNI_VERSION: &str = "1.0.0";

/// A network configuration list (a "conflist"): plugins run in order on ADD
/// and CHECK, in reverse on DEL, each seeing the previous one's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NetworkList {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<Value>,
}

impl NetworkList {
    /// The pod network: a veth pair from the pod's `eth0` to `bridge`, with
    /// an address from `cidr` leased under `data_dir`.
    ///
    /// The bridge itself (with the gateway address) is set up by the caller
    /// beforehand, so `isGateway` stays false: with it true the bridge plugin
    /// also turns on the host's `ip_forward`, which would let pod traffic be
    /// routed off the machine. `ipMasq` is false for the same reason.
    pub fn pod_network(name: &str, bridge: &str, cidr: &PodCidr, data_dir: &Path) -> Self {
        let bridge = json!({
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{
                    "subnet": cidr.to_string(),
                    "gateway": cidr.gateway().to_string(),
                }]],
                "routes": [{ "dst": "0.0.0.0/0", "gw": cidr.gateway().to_string() }],
                "dataDir": data_dir.to_string_lossy(),
            },
        });
        NetworkList {
            cni_version: CNI_VERSION.to_string(),
            name: name.to_string(),
            plugins: vec![bridge],
        }
    }

    /// The loopback network, run with interface name `lo`.
    pub fn loopback() -> Self {
        NetworkList {
            cni_version: CNI_VERSION.to_string(),
            name: "cni-loopback".to_string(),
            plugins: vec![json!({ "type": "loopback" })],
        }
    }

    /// The configuration plugin `index` reads on stdin: its own entry plus
    /// the list's name and version and, when there is one, `prevResult`.
    pub fn plugin_conf(&self, index: usize, prev_result: Option<&Value>) -> Value {
        let mut conf = match self.plugins.get(index) {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        conf.insert("cniVersion".into(), json!(self.cni_version));
        conf.insert("name".into(), json!(self.name));
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        Value::Object(conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> NetworkList {
        let cidr: PodCidr = "10.244.1.0/24".parse().unwrap();
        NetworkList::pod_network("kaji", "kaji0", &cidr, Path::new("/data/cni/ipam"))
    }

    #[test]
    fn the_pod_network_never_masquerades_or_turns_the_host_into_a_router() {
        let conf = list().plugin_conf(0, None);
        assert_eq!(conf["type"], "bridge");
        assert_eq!(conf["bridge"], "kaji0");
        assert_eq!(conf["ipMasq"], false);
        assert_eq!(conf["isGateway"], false);
        assert_eq!(conf["hairpinMode"], true);
    }

    #[test]
    fn host_local_leases_from_the_pod_cidr_into_the_kaji_data_dir() {
        let ipam = &list().plugin_conf(0, None)["ipam"];
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(ipam["ranges"][0][0]["gateway"], "10.244.1.1");
        assert_eq!(ipam["routes"][0]["gw"], "10.244.1.1");
        assert_eq!(ipam["dataDir"], "/data/cni/ipam");
    }

    #[test]
    fn each_plugin_sees_the_list_name_version_and_previous_result() {
        let prev = json!({ "cniVersion": "1.0.0", "ips": [] });
        let conf = list().plugin_conf(0, Some(&prev));
        assert_eq!(conf["name"], "kaji");
        assert_eq!(conf["cniVersion"], CNI_VERSION);
        assert_eq!(conf["prevResult"], prev);
        assert!(list().plugin_conf(0, None).get("prevResult").is_none());
    }

    #[test]
    fn a_network_list_round_trips_through_json_as_a_conflist() {
        let text = serde_json::to_string(&list()).unwrap();
        assert!(text.contains("\"cniVersion\":\"1.0.0\""));
        let back: NetworkList = serde_json::from_str(&text).unwrap();
        assert_eq!(back, list());
    }
}
