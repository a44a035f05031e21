//! placeholder, being written.

/// Runs the controller.
///
/// # Errors
/// Fatal API errors.
pub async fn run(_client: kube::Client) -> Result<(), crate::Error> {
    std::future::pending().await
}
