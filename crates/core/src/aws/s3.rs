//! Documents, manifests and results on S3.

use super::sdk::describe;
use crate::batch::ports::{DocumentStore, ObjectHead, StoredObject};
use crate::batch::{ObjectRef, PinnedDocument};
use crate::error::{StoreError, StoreErrorKind};
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

/// An S3 client; `force_path_style` for endpoints without virtual-hosted buckets (the local
/// stack). Built once per function instance.
pub fn s3_client(sdk: &aws_config::SdkConfig, force_path_style: bool) -> Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .build();
    Client::from_conf(config)
}

#[derive(Debug, Clone)]
pub struct S3DocumentStore {
    client: Client,
}

impl S3DocumentStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn store_error<E>(operation: &'static str, object: &ObjectRef, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = describe(&error);
    let not_found = matches!(failure.code.as_deref(), Some("NoSuchKey" | "NoSuchBucket" | "NotFound"))
        || matches!(&error, SdkError::ServiceError(e) if e.raw().status().as_u16() == 404);
    let kind = match failure.code.as_deref() {
        _ if not_found => StoreErrorKind::NotFound,
        Some("SlowDown" | "ThrottlingException" | "RequestLimitExceeded") => StoreErrorKind::Throttled,
        _ if failure.transport => StoreErrorKind::Transport,
        _ => StoreErrorKind::Rejected,
    };
    StoreError {
        operation,
        location: object.to_string(),
        kind,
        message: failure.message,
        source: Some(Box::new(error)),
    }
}

impl S3DocumentStore {
    /// GetObject of `version_id` (the current version if `None`), bounded by `max_bytes`.
    async fn get_version(
        &self,
        object: &ObjectRef,
        version_id: Option<&str>,
        max_bytes: u64,
    ) -> Result<StoredObject, StoreError> {
        let output = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| store_error("get", object, e))?;
        let too_large = |size: u64| {
            StoreError::new(
                "get",
                object.to_string(),
                StoreErrorKind::TooLarge,
                format!("{size} bytes, more than the {max_bytes} allowed"),
            )
        };
        // Refused before reading the body when S3 says how large it is.
        if let Some(length) = output.content_length.and_then(|l| u64::try_from(l).ok())
            && length > max_bytes
        {
            return Err(too_large(length));
        }
        let content_type = output.content_type.clone();
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError {
                operation: "get",
                location: object.to_string(),
                kind: StoreErrorKind::Transport,
                message: e.to_string(),
                source: Some(Box::new(e)),
            })?
            .into_bytes()
            .to_vec();
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(StoredObject { bytes, content_type })
    }
}

impl DocumentStore for S3DocumentStore {
    async fn get(&self, object: &ObjectRef, max_bytes: u64) -> Result<StoredObject, StoreError> {
        self.get_version(object, None, max_bytes).await
    }

    async fn head(&self, object: &ObjectRef) -> Result<ObjectHead, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await
            .map_err(|e| store_error("head", object, e))?;
        Ok(ObjectHead {
            size: output.content_length.and_then(|l| u64::try_from(l).ok()).unwrap_or(0),
            // S3 answers "null" for objects written before versioning was enabled: reading
            // that version by ID works, so it is kept as S3 gave it.
            version_id: output.version_id,
        })
    }

    async fn get_pinned(&self, document: &PinnedDocument, max_bytes: u64) -> Result<StoredObject, StoreError> {
        let object = &document.object;
        let found = self
            .get_version(object, document.version_id.as_deref(), max_bytes)
            .await?;
        match document.size {
            Some(size) if size != found.bytes.len() as u64 => Err(StoreError::new(
                "get",
                object.to_string(),
                StoreErrorKind::Rejected,
                format!("{} bytes, pinned at {size}", found.bytes.len()),
            )),
            _ => Ok(found),
        }
    }

    async fn put(&self, object: &ObjectRef, bytes: Vec<u8>, content_type: &str) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| store_error("put", object, e))?;
        Ok(())
    }
}
