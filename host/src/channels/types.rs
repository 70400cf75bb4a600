//! Channel types users pick by name: which adapter speaks each, and the
//! base URL used when the operator gives none.
//!
//! A channel whose type is not listed here names an adapter directly (an
//! adapter added at run time, say) and must be given a base URL.

pub struct ChannelType {
    pub name: &'static str,
    pub adapter: &'static str,
    pub base_url: &'static str,
}

const fn t(name: &'static str, adapter: &'static str, base_url: &'static str) -> ChannelType {
    ChannelType {
        name,
        adapter,
        base_url,
    }
}

/// Every known channel type.
pub const TYPES: &[ChannelType] = &[
    t("openai", "openai", "https://api.openai.com"),
    t("deepseek", "openai", "https://api.deepseek.com"),
    t("moonshot", "openai", "https://api.moonshot.cn"),
    t("siliconflow", "openai", "https://api.siliconflow.cn"),
    t("together", "openai", "https://api.together.xyz"),
    t("xai", "openai", "https://api.x.ai"),
    t("groq", "openai", "https://api.groq.com/openai/v1"),
    t("mistral", "openai", "https://api.mistral.ai"),
    t("openrouter", "openai", "https://openrouter.ai/api/v1"),
    t("cerebras", "openai", "https://api.cerebras.ai"),
    t("sambanova", "openai", "https://api.sambanova.ai"),
    t("novita", "openai", "https://api.novita.ai/v3/openai"),
    t(
        "github-models",
        "openai",
        "https://models.github.ai/inference",
    ),
    t("ollama", "openai", "http://127.0.0.1:11434"),
    t("vllm", "openai", "http://127.0.0.1:8000"),
    t("lingyiwanwu", "openai", "https://api.lingyiwanwu.com"),
    t("yi", "openai", "https://api.lingyiwanwu.com"),
    t("stepfun", "openai", "https://api.stepfun.com"),
    t("baichuan", "openai", "https://api.baichuan-ai.com"),
    t("minimax", "openai", "https://api.minimax.chat"),
    t(
        "doubao",
        "openai",
        "https://ark.cn-beijing.volces.com/api/v3",
    ),
    t(
        "volcengine",
        "openai",
        "https://ark.cn-beijing.volces.com/api/v3",
    ),
    t("dmxapi", "openai", "https://www.dmxapi.cn"),
    t("custom", "openai", ""),
    t("anthropic", "anthropic", "https://api.anthropic.com"),
    t("claude", "anthropic", "https://api.anthropic.com"),
    t(
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com",
    ),
    // Gemini on Vertex AI: the key is a service-account JSON key (the host
    // trades it for an access token). The us-central1 endpoint stands for
    // "Google's endpoint": the gemini adapter uses the one of the channel's
    // `location` option (any other base URL is used as given).
    t(
        "vertex",
        "gemini",
        "https://us-central1-aiplatform.googleapis.com",
    ),
    t(
        "vertex-ai",
        "gemini",
        "https://us-central1-aiplatform.googleapis.com",
    ),
    t("apimart", "apimart", "https://api.apimart.ai"),
    t("kling", "kling", "https://api-singapore.klingai.com"),
    t("tencent", "tencent", "https://hunyuan.tencentcloudapi.com"),
    t("hunyuan", "tencent", "https://hunyuan.tencentcloudapi.com"),
    t("coze", "coze", "https://api.coze.com"),
    // OpenAI dialects with their own URLs, auth and errors (the
    // openai-compat adapter picks the provider by the channel type).
    // Azure has no default: the operator gives https://{resource}.openai.azure.com.
    t("azure", "openai-compat", ""),
    t("azure-openai", "openai-compat", ""),
    t(
        "zhipu",
        "openai-compat",
        "https://open.bigmodel.cn/api/paas/v4",
    ),
    t(
        "glm",
        "openai-compat",
        "https://open.bigmodel.cn/api/paas/v4",
    ),
    t("ali", "openai-compat", "https://dashscope.aliyuncs.com"),
    t(
        "dashscope",
        "openai-compat",
        "https://dashscope.aliyuncs.com",
    ),
    t("qwen", "openai-compat", "https://dashscope.aliyuncs.com"),
    t(
        "cloudflare",
        "openai-compat",
        "https://api.cloudflare.com/client/v4",
    ),
    t(
        "workers-ai",
        "openai-compat",
        "https://api.cloudflare.com/client/v4",
    ),
    t("baidu", "openai-compat", "https://qianfan.baidubce.com/v2"),
    t(
        "qianfan",
        "openai-compat",
        "https://qianfan.baidubce.com/v2",
    ),
    t("ernie", "openai-compat", "https://qianfan.baidubce.com/v2"),
    t("cohere", "cohere", "https://api.cohere.com"),
    t("jina", "jina-voyage", "https://api.jina.ai"),
    t("voyage", "jina-voyage", "https://api.voyageai.com"),
    // The us-east-1 endpoint stands for "the region's endpoint": the bedrock
    // adapter replaces it with the one of the channel's `region` option.
    t(
        "bedrock",
        "bedrock",
        "https://bedrock-runtime.us-east-1.amazonaws.com",
    ),
    t(
        "aws",
        "bedrock",
        "https://bedrock-runtime.us-east-1.amazonaws.com",
    ),
];

pub fn find(name: &str) -> Option<&'static ChannelType> {
    TYPES.iter().find(|t| t.name == name)
}

/// The adapter that serves a channel type.
pub fn adapter_for(kind: &str) -> &str {
    find(kind).map_or(kind, |t| t.adapter)
}

/// The default base URL of a channel type, if it has one.
pub fn default_base_url(kind: &str) -> Option<&'static str> {
    find(kind).map(|t| t.base_url).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(adapter_for("deepseek"), "openai");
        assert_eq!(adapter_for("my-adapter"), "my-adapter");
        assert_eq!(default_base_url("custom"), None);
        assert_eq!(default_base_url("openai"), Some("https://api.openai.com"));
        assert_eq!(adapter_for("vertex"), "gemini");
        assert_eq!(adapter_for("vertex-ai"), "gemini");
        let mut names: Vec<_> = TYPES.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TYPES.len(), "type names are unique");
    }
}
