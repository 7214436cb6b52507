//! The production clients behind the capabilities: cloud profiles (which endpoints), the HTTP
//! transport (rustls, an extra CA for the local cloud), and the Azure Resource Manager client
//! with retries, deadlines and long-running operations. The same code talks to Azure and to the
//! local cloud; only the profile differs.

pub mod arm;
pub mod azure;
pub mod credential;
pub mod http;
pub mod keyvault;
pub mod kube;
pub mod profile;
pub mod wire;

pub use arm::{ArmClient, ArmResponse, CloudError, RetryPolicy};
pub use azure::{ApiVersions, AzureBackend};
pub use keyvault::KeyVaultClient;
pub use kube::{KubeClients, KubeContext};
pub use profile::{CloudProfile, LocalProfile};
