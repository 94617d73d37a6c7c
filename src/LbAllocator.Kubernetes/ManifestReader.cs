using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Crds;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace LbAllocator.Kubernetes;

/// <summary>Where an object or an error is in the input, printed as FILE:LINE:COLUMN.</summary>
public sealed record SourcePosition(string File, long Line, long Column)
{
    public override string ToString() => $"{File}:{Line}:{Column}";
}

public sealed record Located<T>(SourcePosition Position, T Value);

/// <summary>The objects read from a set of manifests, in input order, and the read errors.</summary>
public sealed class ManifestSet
{
    public List<Located<V1Alpha1IPAddressPool>> Pools { get; } = [];
    public List<Located<V1Alpha1L2Advertisement>> Advertisements { get; } = [];
    public List<Located<V1Service>> Services { get; } = [];
    public List<Located<V1Namespace>> Namespaces { get; } = [];

    /// <summary>One line each: "FILE:LINE:COLUMN: message".</summary>
    public List<string> Errors { get; } = [];
}

/// <summary>
/// Reads Kubernetes YAML (multi-document files, v1 List objects, directories recursively) holding the
/// kinds lballocator understands. YamlDotNet finds the documents and their positions; KubernetesClient's
/// KubernetesYaml turns each into its typed object, strictly for our own kinds so that a misspelt field is
/// an error rather than silently ignored.
/// </summary>
public static partial class ManifestReader
{
    private static readonly Dictionary<string, Type> Kinds = new(StringComparer.Ordinal)
    {
        [$"{Api.GroupVersion}/IPAddressPool"] = typeof(V1Alpha1IPAddressPool),
        [$"{Api.GroupVersion}/L2Advertisement"] = typeof(V1Alpha1L2Advertisement),
        ["v1/Service"] = typeof(V1Service),
        ["v1/Namespace"] = typeof(V1Namespace),
    };

    private static readonly string[] Extensions = [".yaml", ".yml", ".json"];

    public static ManifestSet ReadPaths(IEnumerable<string> paths)
    {
        var set = new ManifestSet();
        foreach (var path in paths)
        {
            if (Directory.Exists(path))
            {
                var files = Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                    .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                    .Order(StringComparer.Ordinal);
                foreach (var file in files)
                {
                    ReadFile(file, set);
                }
            }
            else if (File.Exists(path))
            {
                ReadFile(path, set);
            }
            else
            {
                set.Errors.Add($"{path}: no such file or directory");
            }
        }

        return set;
    }

    public static void ReadText(string file, string content, ManifestSet into)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(content));
        }
        catch (YamlException e)
        {
            into.Errors.Add($"{new SourcePosition(file, e.Start.Line, e.Start.Column)}: invalid YAML: {Innermost(e)}");
            return;
        }

        var ends = NodeEnds(content);
        foreach (var document in stream.Documents)
        {
            var root = document.RootNode;
            if (root is YamlScalarNode { Value: null or "" })
            {
                continue; // an empty document, e.g. after a trailing "---"
            }

            ReadObject(file, content, ends, root, into);
        }
    }

    private static void ReadFile(string file, ManifestSet into)
    {
        string content;
        try
        {
            content = File.ReadAllText(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            into.Errors.Add($"{file}: cannot read: {e.Message}");
            return;
        }

        ReadText(file, content, into);
    }

    private static void ReadObject(string file, string content, Dictionary<long, long> ends, YamlNode node, ManifestSet into)
    {
        var at = new SourcePosition(file, node.Start.Line, node.Start.Column);
        if (node is not YamlMappingNode map)
        {
            into.Errors.Add($"{at}: expected a Kubernetes object (a mapping with apiVersion and kind)");
            return;
        }

        var apiVersion = Scalar(map, "apiVersion");
        var kind = Scalar(map, "kind");
        if (apiVersion == "v1" && kind == "List")
        {
            if (map.Children.TryGetValue(new YamlScalarNode("items"), out var items) && items is YamlSequenceNode list)
            {
                foreach (var item in list)
                {
                    ReadObject(file, content, ends, item, into);
                }
            }

            return;
        }

        if (string.IsNullOrEmpty(apiVersion) || string.IsNullOrEmpty(kind))
        {
            into.Errors.Add($"{at}: object has no apiVersion or kind");
            return;
        }

        if (!Kinds.TryGetValue($"{apiVersion}/{kind}", out var type))
        {
            into.Errors.Add($"{at}: unknown kind \"{kind}\" in \"{apiVersion}\": expected {Api.GroupVersion} IPAddressPool or L2Advertisement, or v1 Service, Namespace or List");
            return;
        }

        // Re-parse just this object's text, indented as in the file so error columns stay right.
        var text = new string(' ', (int)node.Start.Column - 1) + content[(int)node.Start.Index..(int)ends[node.Start.Index]];
        object parsed;
        try
        {
            parsed = KubernetesYaml.LoadAllFromString(text, Kinds, strict: apiVersion == Api.GroupVersion).Single();
        }
        catch (YamlException e)
        {
            var position = new SourcePosition(file, node.Start.Line + e.Start.Line - 1, e.Start.Column);
            into.Errors.Add($"{position}: {kind}: {Innermost(e)}");
            return;
        }

        switch (parsed)
        {
            case V1Alpha1IPAddressPool pool:
                into.Pools.Add(new(at, pool));
                break;
            case V1Alpha1L2Advertisement ad:
                into.Advertisements.Add(new(at, ad));
                break;
            case V1Service service:
                into.Services.Add(new(at, service));
                break;
            case V1Namespace ns:
                into.Namespaces.Add(new(at, ns));
                break;
        }
    }

    /// <summary>
    /// Where each mapping and sequence ends, by its start offset: the representation model only keeps
    /// where nodes start, so the parser's events are walked once for the ends.
    /// </summary>
    private static Dictionary<long, long> NodeEnds(string content)
    {
        var ends = new Dictionary<long, long>();
        var open = new Stack<long>();
        var parser = new Parser(new StringReader(content));
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case MappingStart or SequenceStart:
                    open.Push(parser.Current.Start.Index);
                    break;
                case MappingEnd or SequenceEnd:
                    // A flow collection's end event points at its closing bracket; keep the bracket.
                    var end = parser.Current.End.Index;
                    ends[open.Pop()] = end < content.Length && content[(int)end] is '}' or ']' ? end + 1 : end;
                    break;
            }
        }

        return ends;
    }

    private static string? Scalar(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(new YamlScalarNode(key), out var value) && value is YamlScalarNode scalar ? scalar.Value : null;

    /// <summary>The most specific message, with YamlDotNet's type names turned into field names.</summary>
    private static string Innermost(Exception e)
    {
        var message = e.Message;
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            message = inner.Message;
        }

        message = UnknownProperty().Replace(message, "unknown field \"$1\"");
        return message.TrimEnd('.');
    }

    [GeneratedRegex("Property '([^']+)' not found on type '[^']+'")]
    private static partial Regex UnknownProperty();
}
