using System.Buffers;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Text.Unicode;
using k8s;
using k8s.Models;
using LbAllocator.Kubernetes.Client;
using LbAllocator.Kubernetes.Crds;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;
using FlowMappingEnd = YamlDotNet.Core.Tokens.FlowMappingEnd;
using FlowMappingStart = YamlDotNet.Core.Tokens.FlowMappingStart;
using FlowSequenceEnd = YamlDotNet.Core.Tokens.FlowSequenceEnd;
using FlowSequenceStart = YamlDotNet.Core.Tokens.FlowSequenceStart;
using Token = YamlDotNet.Core.Tokens.Token;

namespace LbAllocator.Kubernetes;

/// <summary>Where an object or an error is in the input, printed as FILE:LINE:COLUMN.</summary>
public sealed record SourcePosition(string File, long Line, long Column)
{
    public SourcePosition(string file, Mark mark)
        : this(file, mark.Line, mark.Column)
    {
    }

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

    /// <summary>
    /// One line each: "FILE:LINE:COLUMN: message" for what a file says, "PATH: message" when a path
    /// cannot be read at all (it has no line to point at).
    /// </summary>
    public List<string> Errors { get; } = [];
}

/// <summary>
/// Reads Kubernetes YAML (multi-document files, v1 List objects, directories recursively) holding the
/// kinds lballocator understands. YamlDotNet finds the documents and their positions; <see cref="TypedYaml"/>
/// turns each into its typed object through the client's JSON metadata (`KubeJson`: no reflection, so NativeAOT
/// reads manifests as the JIT build does), strictly for our own kinds so that a misspelt field is an error
/// rather than silently ignored. Whatever the input, reading never throws: every way it can be unreadable
/// becomes one error in <see cref="ManifestSet.Errors"/>.
/// </summary>
public static partial class ManifestReader
{
    private sealed record Kind(Type Type, bool Strict, Action<ManifestSet, SourcePosition, object> Add);

    private static readonly Dictionary<string, Kind> Kinds = new(StringComparer.Ordinal)
    {
        [$"{Api.GroupVersion}/IPAddressPool"] = new(
            typeof(V1Alpha1IPAddressPool), Strict: true, (set, at, o) => set.Pools.Add(new(at, (V1Alpha1IPAddressPool)o))),
        [$"{Api.GroupVersion}/L2Advertisement"] = new(
            typeof(V1Alpha1L2Advertisement), Strict: true, (set, at, o) => set.Advertisements.Add(new(at, (V1Alpha1L2Advertisement)o))),
        // Core kinds leniently: newer API servers add fields this client does not know.
        ["v1/Service"] = new(typeof(V1Service), Strict: false, (set, at, o) => set.Services.Add(new(at, (V1Service)o))),
        ["v1/Namespace"] = new(typeof(V1Namespace), Strict: false, (set, at, o) => set.Namespaces.Add(new(at, (V1Namespace)o))),
    };

    /// <summary>The options every exchange with the API server uses (<see cref="KubeJson"/>), so a manifest reads as the server's objects do.</summary>
    private static readonly Lazy<JsonSerializerOptions> JsonOptions = new(() => KubeJson.Default.Options);

    private static readonly string[] Extensions = [".yaml", ".yml", ".json"];

    /// <summary>Far more than a manifest needs, and few enough for the recursive loaders' stacks.</summary>
    private const int MaxDepth = 100;

    /// <summary>A bound on what is read from one file, so a device like /dev/zero ends in an error.</summary>
    private const int MaxFileBytes = 64 << 20;

    public static ManifestSet ReadPaths(IEnumerable<string> paths)
    {
        var set = new ManifestSet();
        ReadDocuments(paths, Into(set));
        return set;
    }

    /// <summary>
    /// Where reading goes: each problem as one line, and each object (a document, or an item of a v1 List) with its file
    /// and the file's text. The importer of MetalLB's configuration reads the same files the same way and turns the
    /// objects into its own.
    /// </summary>
    internal sealed record Reading(List<string> Errors, Action<string, string, YamlNode> Object);

    private static Reading Into(ManifestSet set) => new(set.Errors, (file, _, root) => ReadObject(file, root, set));

    /// <summary>Files, and directories recursively (.yaml, .yml and .json in name order), one document at a time.</summary>
    internal static void ReadDocuments(IEnumerable<string> paths, Reading into)
    {
        foreach (var path in paths)
        {
            if (Directory.Exists(path))
            {
                List<string> files;
                try
                {
                    files = [.. Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                        .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                        .Order(StringComparer.Ordinal)];
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    into.Errors.Add($"{path}: cannot read: {e.Message}");
                    continue;
                }

                foreach (var file in files)
                {
                    ReadFile(file, into);
                }
            }
            else if (File.Exists(path))
            {
                ReadFile(path, into);
            }
            else
            {
                into.Errors.Add($"{path}: no such file or directory");
            }
        }
    }

    /// <summary>A file's bytes: UTF-8 (with or without a byte order mark), then as <see cref="ReadText"/>.</summary>
    public static void ReadBytes(string file, ReadOnlySpan<byte> bytes, ManifestSet into) => ReadBytes(file, bytes, Into(into));

    public static void ReadText(string file, string content, ManifestSet into) => ReadText(file, content, Into(into));

    private static void ReadBytes(string file, ReadOnlySpan<byte> bytes, Reading into)
    {
        if (bytes.StartsWith(Utf8Bom))
        {
            bytes = bytes[Utf8Bom.Length..];
        }

        // Strictly: a replacement character in place of a bad byte would be read as if the file said so.
        var chars = new char[bytes.Length];
        if (Utf8.ToUtf16(bytes, chars, out var read, out var written, replaceInvalidSequences: false) != OperationStatus.Done)
        {
            into.Errors.Add($"{Locate(file, chars.AsSpan(0, written), written)}: not valid UTF-8 (byte 0x{bytes[read]:X2} at offset {read})");
            return;
        }

        ReadText(file, new string(chars, 0, written), into);
    }

    /// <summary>Text as YAML: each object of each document that is not empty goes to <paramref name="into"/>; the first syntax error ends the file.</summary>
    internal static void ReadText(string file, string content, Reading into)
    {
        // YAML forbids them; YamlDotNet lets most through and a NUL derails it, with an error far from it.
        if (FirstNotPrintable(content) is var bad and >= 0)
        {
            into.Errors.Add($"{Locate(file, content, bad)}: character U+{(int)content[bad]:X4} is not allowed in YAML");
            return;
        }

        if (Scan(file, content, into) is not { } events)
        {
            return;
        }

        var stream = new YamlStream();
        var replay = new Replay(events);
        try
        {
            stream.Load(replay);
        }
        catch (Exception e) when (IsUnreadable(e))
        {
            // Duplicate keys.
            var position = new SourcePosition(file, e is YamlException y ? y.Start : replay.Current?.Start ?? default);
            into.Errors.Add($"{position}: invalid YAML: {Message(e)}");
            return;
        }

        foreach (var document in stream.Documents)
        {
            var root = document.RootNode;
            if (root is YamlScalarNode { Value: null or "" })
            {
                continue; // an empty document, e.g. after a trailing "---"
            }

            Objects(file, content, root, into);
        }
    }

    /// <summary>A document's objects: the document itself, or each item of a v1 List (as `kubectl get -o yaml` writes).</summary>
    private static void Objects(string file, string content, YamlNode node, Reading into)
    {
        if (node is not YamlMappingNode map || Scalar(map, "apiVersion") != "v1" || Scalar(map, "kind") != "List")
        {
            into.Object(file, content, node);
            return;
        }

        switch (map.Children.TryGetValue(new YamlScalarNode("items"), out var items) ? items : null)
        {
            case YamlSequenceNode list:
                foreach (var item in list)
                {
                    Objects(file, content, item, into);
                }

                break;
            case null or YamlScalarNode { Value: null or "" or "~" or "null" }:
                break; // no items
            case var other:
                into.Errors.Add($"{new SourcePosition(file, other.Start)}: List: items: expected a list of objects");
                break;
        }
    }

    /// <summary>
    /// Exceptions that mean the input could not be read. Besides YamlException (with a position), YamlDotNet's
    /// scanner and parser throw InvalidOperationException and ArgumentException on some broken input (e.g. a
    /// flow mapping left open), and the client's converters throw their own (FormatException, ...): all are
    /// input errors here, whatever their type.
    /// </summary>
    private static bool IsUnreadable(Exception e) => e is not OutOfMemoryException;

    /// <summary>
    /// Tokenizes the text once, into the events the rest replays, and checks what loading them would report
    /// badly or not at all. Every syntax error surfaces here.
    /// </summary>
    private static List<ParsingEvent>? Scan(string file, string content, Reading into)
    {
        var scanner = new BracketScanner(new Scanner(new StringReader(content), skipComments: true));
        var parser = new Parser(scanner);
        var events = new List<ParsingEvent>();
        var depth = 0;
        var anchors = new HashSet<AnchorName>();
        try
        {
            while (parser.MoveNext())
            {
                var current = parser.Current!;
                events.Add(current);
                switch (current)
                {
                    // Here rather than when loading, which reports it with no position.
                    case AnchorAlias alias when !anchors.Contains(alias.Value):
                        into.Errors.Add($"{new SourcePosition(file, current.Start)}: invalid YAML: *{alias.Value} has no &{alias.Value} before it in its document");
                        return null;
                    case DocumentStart:
                        anchors.Clear();
                        break;
                    case NodeEvent { Anchor.IsEmpty: false } node:
                        anchors.Add(node.Anchor);
                        break;
                }

                switch (current)
                {
                    case MappingStart or SequenceStart when depth == MaxDepth:
                        into.Errors.Add($"{new SourcePosition(file, current.Start)}: nested more than {MaxDepth} levels deep");
                        return null;
                    case MappingStart or SequenceStart:
                        depth++;
                        break;
                    case MappingEnd or SequenceEnd:
                        depth--;
                        break;
                }
            }
        }
        catch (YamlException e)
        {
            into.Errors.Add($"{new SourcePosition(file, e.Start)}: invalid YAML: {Message(e)}");
            return null;
        }
        catch (Exception e) when (IsUnreadable(e))
        {
            // No position in the exception: the scanner's is where it stopped. The usual cause is a '{' or '['
            // left open, which the scanner does not name.
            var message = scanner.Open.TryPeek(out var unclosed)
                ? $"the {(unclosed is FlowMappingStart ? "'{'" : "'['")} at {unclosed.Start.Line}:{unclosed.Start.Column} is not closed"
                : "cannot be read from here on";
            into.Errors.Add($"{new SourcePosition(file, scanner.CurrentPosition)}: invalid YAML: {message}");
            return null;
        }

        return events;
    }

    private static void ReadObject(string file, YamlNode node, ManifestSet into)
    {
        var at = new SourcePosition(file, node.Start);
        if (node is not YamlMappingNode map)
        {
            into.Errors.Add($"{at}: expected a Kubernetes object (a mapping with apiVersion and kind)");
            return;
        }

        var apiVersion = Scalar(map, "apiVersion");
        var kind = Scalar(map, "kind");
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

        if (FirstNullItem(map, new HashSet<YamlNode>(ReferenceEqualityComparer.Instance)) is { } nullItem)
        {
            // The mappers would have to guess what an empty list item means; Kubernetes rejects them too.
            into.Errors.Add($"{new SourcePosition(file, nullItem.Start)}: {kind}: a list item is empty");
            return;
        }

        object parsed;
        try
        {
            parsed = TypedYaml.Deserialize(map, type.Type, JsonOptions.Value, type.Strict);
        }
        catch (TypedYamlException e)
        {
            into.Errors.Add($"{new SourcePosition(file, e.At)}: {kind}: {e.Message}");
            return;
        }
        catch (Exception e) when (IsUnreadable(e))
        {
            // A converter's own failure, with no node to point at.
            into.Errors.Add($"{at}: {kind}: {Message(e)}");
            return;
        }

        type.Add(into, at, parsed);
    }

    /// <summary>Each node once: aliases may repeat a node many times over, or (YamlDotNet permitting) contain it.</summary>
    private static YamlNode? FirstNullItem(YamlNode node, HashSet<YamlNode> seen)
    {
        if (!seen.Add(node))
        {
            return null;
        }

        return node switch
        {
            YamlSequenceNode list => list.Children.FirstOrDefault(IsNull) ?? list.Children.Select(n => FirstNullItem(n, seen)).FirstOrDefault(n => n is not null),
            YamlMappingNode map => map.Children.Values.Select(n => FirstNullItem(n, seen)).FirstOrDefault(n => n is not null),
            _ => null,
        };
    }

    private static bool IsNull(YamlNode node) => TypedYaml.IsNull(node);

    internal static string? Scalar(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(new YamlScalarNode(key), out var value) && value is YamlScalarNode scalar ? scalar.Value : null;

    /// <summary>The most specific message, in the manifest's terms rather than .NET's.</summary>
    internal static string Message(Exception e)
    {
        var message = e.Message;
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
        {
            message = inner.Message;
        }

        message = NotANumber().Replace(message, "\"$1\" is not a number");
        // One error, one line.
        return string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).TrimEnd('.');
    }

    /// <summary>What a .NET type is in YAML.</summary>
    internal static string Shape(string name) => name switch
    {
        "System.String" => "a string",
        _ when name.Contains("IDictionary", StringComparison.Ordinal) => "a mapping",
        _ when name.Contains("IList", StringComparison.Ordinal) => "a list",
        _ when name.StartsWith("System.Int", StringComparison.Ordinal) || name.StartsWith("System.Double", StringComparison.Ordinal) => "a number",
        "System.Boolean" => "true or false",
        _ when name.StartsWith("k8s.Models.", StringComparison.Ordinal) || name.StartsWith("LbAllocator.", StringComparison.Ordinal) => "a mapping",
        _ => name,
    };

    [GeneratedRegex(@"The input string '(.*)' was not in a correct format")]
    private static partial Regex NotANumber();

    private static void ReadFile(string file, Reading into)
    {
        byte[] bytes;
        try
        {
            using var stream = File.OpenRead(file);
            using var buffer = new MemoryStream();
            // One byte over the bound tells a file at the bound from a longer one.
            var total = 0;
            var chunk = new byte[81920];
            int n;
            while (total <= MaxFileBytes && (n = stream.Read(chunk, 0, Math.Min(chunk.Length, MaxFileBytes + 1 - total))) > 0)
            {
                buffer.Write(chunk, 0, n);
                total += n;
            }

            if (total > MaxFileBytes)
            {
                into.Errors.Add($"{file}: larger than {MaxFileBytes >> 20} MiB; not a manifest");
                return;
            }

            bytes = buffer.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            into.Errors.Add($"{file}: cannot read: {e.Message}");
            return;
        }

        ReadBytes(file, bytes, into);
    }

    private static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    /// <summary>What YAML's c-printable leaves out, in UTF-16 units; surrogates are allowed in pairs only.</summary>
    private static readonly SearchValues<char> NotPrintable = SearchValues.Create(
        string.Concat(Enumerable.Range(0, 0x10000).Select(c => (char)c).Where(c =>
            c is (< ' ' and not ('\t' or '\n' or '\r')) or (>= '\u007F' and <= '\u009F' and not '\u0085') or (>= '\uD800' and <= '\uDFFF') or '\uFFFE' or '\uFFFF')));

    /// <summary>The offset of the first character YAML does not allow, or -1.</summary>
    private static int FirstNotPrintable(string text)
    {
        var from = 0;
        while (text.AsSpan(from).IndexOfAny(NotPrintable) is var found and >= 0)
        {
            var i = from + found;
            if (!(char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])))
            {
                return i;
            }

            from = i + 2;
        }

        return -1;
    }

    /// <summary>The line and column of a character offset, counted as YAML counts them (from 1).</summary>
    private static SourcePosition Locate(string file, ReadOnlySpan<char> text, int offset)
    {
        long line = 1, column = 1;
        for (var i = 0; i < offset; i++)
        {
            if (text[i] == '\n' || (text[i] == '\r' && (i + 1 >= text.Length || text[i + 1] != '\n')))
            {
                line++;
                column = 1;
            }
            else
            {
                column++;
            }
        }

        return new SourcePosition(file, line, column);
    }

    /// <summary>The scanner, noting which '{' and '[' are still open: its failures inside them name neither.</summary>
    private sealed class BracketScanner(Scanner inner) : IScanner
    {
        private Token? seen;

        public Stack<Token> Open { get; } = new();

        public Mark CurrentPosition => inner.CurrentPosition;

        public Token? Current => inner.Current;

        public bool MoveNext() => Note(inner.MoveNext());

        public bool MoveNextWithoutConsuming() => Note(inner.MoveNextWithoutConsuming());

        public void ConsumeCurrent() => inner.ConsumeCurrent();

        // The parser looks at a token more than once; each is counted when first seen.
        private bool Note(bool moved)
        {
            if (moved && !ReferenceEquals(inner.Current, seen))
            {
                seen = inner.Current;
                switch (seen)
                {
                    case FlowMappingStart or FlowSequenceStart:
                        Open.Push(seen);
                        break;
                    case FlowMappingEnd or FlowSequenceEnd when Open.Count > 0:
                        Open.Pop();
                        break;
                }
            }

            return moved;
        }
    }

    /// <summary>Replays recorded parsing events, so the text is tokenized once.</summary>
    private sealed class Replay(List<ParsingEvent> events) : IParser
    {
        private int next;

        public ParsingEvent? Current { get; private set; }

        public bool MoveNext()
        {
            Current = next < events.Count ? events[next++] : null;
            return Current is not null;
        }
    }
}
