//! Route families: `/v1/chat/completions`, `chat.completions`, LiteLLM's
//! `acompletion` and OTel's `chat` are one family.

use serde::Serialize;

/// The kind of API call, as far as billing and matching care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteFamily {
    /// Chat Completions and legacy text completions.
    Chat,
    /// OpenAI Responses API.
    Responses,
    Embeddings,
    /// Anthropic Messages API.
    Messages,
    /// Image generation and edits.
    Images,
    /// Speech, transcription, translation.
    Audio,
    /// Anything else (batches, files, moderation, rerank, ...).
    Other,
}

impl RouteFamily {
    /// Every family, in display order.
    pub const ALL: [RouteFamily; 7] = [
        RouteFamily::Chat,
        RouteFamily::Responses,
        RouteFamily::Embeddings,
        RouteFamily::Messages,
        RouteFamily::Images,
        RouteFamily::Audio,
        RouteFamily::Other,
    ];

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            RouteFamily::Chat => "chat",
            RouteFamily::Responses => "responses",
            RouteFamily::Embeddings => "embeddings",
            RouteFamily::Messages => "messages",
            RouteFamily::Images => "images",
            RouteFamily::Audio => "audio",
            RouteFamily::Other => "other",
        }
    }

    /// Classifies a path (`/v1/chat/completions`, a full URL), an SDK
    /// operation (`chat.completions`), a LiteLLM `call_type` (`acompletion`),
    /// an OpenRouter `api_type` or an OTel `gen_ai.operation.name`.
    pub fn classify(route: &str) -> RouteFamily {
        let r = route.trim().to_ascii_lowercase();
        // Drop scheme/host and query so full URLs classify like paths.
        let r = r.split('?').next().unwrap_or("");
        let r = match r.find("://") {
            Some(i) => r
                .get(i + 3..)
                .and_then(|s| s.find('/').and_then(|j| s.get(j..)))
                .unwrap_or(""),
            None => r,
        };
        let has = |s: &str| r.contains(s);
        if has("embed") {
            RouteFamily::Embeddings
        } else if has("image") {
            RouteFamily::Images
        } else if has("audio") || has("transcri") || has("speech") || has("translation") {
            RouteFamily::Audio
        } else if has("responses") || r == "response" || r == "aresponses" {
            RouteFamily::Responses
        } else if has("messages") {
            RouteFamily::Messages
        } else if has("chat")
            || has("completion")
            || r == "generate_content"
            || r == "text_completion"
            // Langfuse's observation type for a model call.
            || r == "generation"
        {
            RouteFamily::Chat
        } else {
            RouteFamily::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        use RouteFamily::*;
        for (s, f) in [
            ("/v1/chat/completions", Chat),
            ("chat.completions", Chat),
            ("acompletion", Chat),
            ("completions", Chat),
            ("chat", Chat),
            ("https://api.openai.com/v1/chat/completions?x=1", Chat),
            ("/v1/responses", Responses),
            ("aresponses", Responses),
            ("/v1/embeddings", Embeddings),
            ("aembedding", Embeddings),
            ("embeddings", Embeddings),
            ("/v1/messages", Messages),
            ("anthropic_messages", Messages),
            ("/v1/images/generations", Images),
            ("aimage_generation", Images),
            ("/v1/audio/transcriptions", Audio),
            ("atranscription", Audio),
            ("aretrieve_batch", Other),
            ("/v1/moderations", Other),
        ] {
            assert_eq!(RouteFamily::classify(s), f, "{s}");
        }
    }
}
