using System.Text.Json.Nodes;

namespace LbAllocator.TestApiServer;

/// <summary>
/// Patch formats. Strategic merge patch is applied as a JSON merge patch: they differ only for lists
/// with merge keys (e.g. ports, containers), which the tests of this project do not patch.
/// </summary>
public static class Patches
{
    /// <summary>RFC 7386: objects merge recursively, null deletes, anything else replaces.</summary>
    public static JsonNode? Merge(JsonNode? target, JsonNode? patch)
    {
        if (patch is not JsonObject patchObject)
        {
            return patch?.DeepClone();
        }

        var result = target is JsonObject t ? (JsonObject)t.DeepClone() : [];
        foreach (var (key, value) in patchObject)
        {
            if (value is null)
            {
                result.Remove(key);
            }
            else
            {
                result[key] = Merge(result[key], value);
            }
        }

        return result;
    }

    /// <summary>RFC 6902 operations; a failed "test" or a bad path is a 422 like kube-apiserver's.</summary>
    public static JsonNode Json(JsonNode document, JsonArray operations)
    {
        var doc = document.DeepClone();
        foreach (var op in operations)
        {
            var kind = op?["op"]?.GetValue<string>();
            var path = op?["path"]?.GetValue<string>() ?? throw Invalid("missing path");
            switch (kind)
            {
                case "add":
                    Add(ref doc, path, op!["value"]?.DeepClone());
                    break;
                case "remove":
                    Remove(doc, path);
                    break;
                case "replace":
                    Remove(doc, path);
                    Add(ref doc, path, op!["value"]?.DeepClone());
                    break;
                case "test":
                    if (!JsonNode.DeepEquals(Find(doc, path), op!["value"]))
                    {
                        throw Invalid($"the test operation on {path} failed");
                    }

                    break;
                case "move":
                {
                    var from = op!["from"]?.GetValue<string>() ?? throw Invalid("missing from");
                    var value = Find(doc, from)?.DeepClone();
                    Remove(doc, from);
                    Add(ref doc, path, value);
                    break;
                }

                case "copy":
                {
                    var from = op!["from"]?.GetValue<string>() ?? throw Invalid("missing from");
                    Add(ref doc, path, Find(doc, from)?.DeepClone());
                    break;
                }

                default:
                    throw Invalid($"unknown operation {kind}");
            }
        }

        return doc;
    }

    private static ApiException Invalid(string message) => new(422, "Invalid", $"the JSON patch could not be applied: {message}");

    private static string[] Tokens(string path) =>
        path.Length == 0 ? [] : path.TrimStart('/').Split('/').Select(t => t.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)).ToArray();

    private static string Pointer(IEnumerable<string> tokens) =>
        string.Concat(tokens.Select(t => "/" + t.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal)));

    private static JsonNode? Find(JsonNode? node, string path)
    {
        foreach (var token in Tokens(path))
        {
            node = node switch
            {
                JsonObject o when o.ContainsKey(token) => o[token],
                JsonArray a when int.TryParse(token, out var i) && i >= 0 && i < a.Count => a[i],
                _ => throw Invalid($"path {path} does not exist"),
            };
        }

        return node;
    }

    private static void Add(ref JsonNode doc, string path, JsonNode? value)
    {
        var tokens = Tokens(path);
        if (tokens.Length == 0)
        {
            doc = value ?? throw Invalid("cannot replace the document with null");
            return;
        }

        var parent = Find(doc, Pointer(tokens[..^1]));
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject o:
                o[last] = value;
                break;
            case JsonArray a when last == "-":
                a.Add(value);
                break;
            case JsonArray a when int.TryParse(last, out var i) && i >= 0 && i <= a.Count:
                a.Insert(i, value);
                break;
            default:
                throw Invalid($"path {path} does not exist");
        }
    }

    private static void Remove(JsonNode doc, string path)
    {
        var tokens = Tokens(path);
        var parent = Find(doc, Pointer(tokens[..^1]));
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject o when o.ContainsKey(last):
                o.Remove(last);
                break;
            case JsonArray a when int.TryParse(last, out var i) && i >= 0 && i < a.Count:
                a.RemoveAt(i);
                break;
            default:
                throw Invalid($"path {path} does not exist");
        }
    }
}
