using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using LbAllocator.Kubernetes;
using Xunit.Abstractions;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// Damaged manifests go through what <c>lballocator validate</c> does, in-process: each must end in exit 0, or
/// exit 1 with every read error as FILE:LINE:COLUMN: message; none may throw.
/// </summary>
public partial class ManifestFuzzTests(ITestOutputHelper output)
{
    private const int Cases = 10_000;
    private const int Seed = 20_251_111;

    // The punctuation YAML gives meaning to, and the whitespace it is picky about.
    private static readonly byte[] Punctuation = "{}[]:-'\"&*!|>#,?%@`\t\n "u8.ToArray();

    [Fact]
    public void Mutated_samples_are_reported_never_thrown()
    {
        var samples = Samples();
        var failures = new ConcurrentBag<(int Case, string Text)>();
        var outcomes = new int[2];
        var clock = Stopwatch.StartNew();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;

        // Each case has its own seed, so a failure names the one case to replay.
        Parallel.For(0, Cases, i =>
        {
            var random = new Random(Seed + i);
            var (name, document) = samples[random.Next(samples.Count)];
            var bytes = Mutate(document, random);
            var (code, failure) = Check(name, bytes);
            if (failure is not null)
            {
                failures.Add((i, $"case {i} ({name}): {failure}\n--- input ---\n{Printable(bytes)}\n---"));
            }
            else
            {
                Interlocked.Increment(ref outcomes[code]);
            }
        });

        var cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
        output.WriteLine($"{Cases} cases in {clock.Elapsed.TotalSeconds:F1} s ({cpuSeconds:F1} s of CPU): {outcomes[0]} valid, {outcomes[1]} invalid");
        Assert.True(failures.IsEmpty, $"{failures.Count} of {Cases} cases failed; the first:\n{string.Join("\n\n", failures.OrderBy(f => f.Case).Take(3).Select(f => f.Text))}");
        // Damage that left everything readable, or nothing, would test little.
        Assert.InRange(outcomes[0], Cases / 10, Cases - (Cases / 10));
    }

    /// <summary>The exit code, and null when the input was handled as validate must handle it, else what went wrong.</summary>
    internal static (int Code, string? Failure) Check(string name, byte[] bytes)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code;
        ManifestSet input = new();
        try
        {
            // plan reads the same way (BrokenInputTests runs it on the issue's file).
            ManifestReader.ReadBytes(name, bytes, input);
            code = Commands.Validate(input, stdout, stderr);
        }
        catch (Exception e)
        {
            return (-1, $"threw {e}");
        }

        var printed = stdout.ToString() + stderr;
        if (code is not (0 or 1))
        {
            return (code, $"exit {code}:\n{printed}");
        }

        if (code == 1 && string.IsNullOrWhiteSpace(stdout.ToString()))
        {
            return (code, $"exit 1 without a message:\n{printed}");
        }

        if (printed.Contains("Exception", StringComparison.Ordinal) || printed.Contains("   at ", StringComparison.Ordinal))
        {
            return (code, $"printed an exception:\n{printed}");
        }

        var misplaced = input.Errors.FirstOrDefault(e => !ReadError().IsMatch(e) || !e.StartsWith(name + ":", StringComparison.Ordinal) || e.Contains('\n', StringComparison.Ordinal));
        return (code, misplaced is null ? null : $"read error not in the form FILE:LINE:COLUMN: message: {misplaced}");
    }

    [GeneratedRegex(@"^[^:]+:\d+:\d+: \S")]
    private static partial Regex ReadError();

    /// <summary>
    /// Each YAML document of each sample, and each two neighbours with their "---" between: whole files
    /// would make a case several times slower and find nothing more.
    /// </summary>
    private static List<(string Name, byte[] Bytes)> Samples()
    {
        var assembly = typeof(CliApp).Assembly;
        var samples = new List<(string, byte[])>();
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith("config/samples/", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            using var reader = new StreamReader(assembly.GetManifestResourceStream(name)!);
            var documents = DocumentSeparator().Split(reader.ReadToEnd());
            for (var i = 0; i < documents.Length; i++)
            {
                samples.Add((name, Encoding.UTF8.GetBytes(documents[i])));
                if (i + 1 < documents.Length)
                {
                    samples.Add((name, Encoding.UTF8.GetBytes(documents[i] + "---\n" + documents[i + 1])));
                }
            }
        }

        Assert.True(samples.Count > 20, $"only {samples.Count} sample documents");
        return samples;
    }

    [GeneratedRegex("^---\\n", RegexOptions.Multiline)]
    private static partial Regex DocumentSeparator();

    /// <summary>One to four damages of the kinds people and tools do to YAML.</summary>
    internal static byte[] Mutate(byte[] document, Random random)
    {
        var bytes = new List<byte>(document);
        var count = random.Next(1, 5);
        for (var n = 0; n < count && bytes.Count > 0; n++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(6))
            {
                case 0: // a flipped bit or a random byte
                    bytes[at] = random.Next(2) == 0 ? (byte)(bytes[at] ^ (1 << random.Next(8))) : (byte)random.Next(256);
                    break;
                case 1: // a deleted run
                    bytes.RemoveRange(at, Math.Min(random.Next(1, 16), bytes.Count - at));
                    break;
                case 2: // inserted punctuation
                case 3:
                    bytes.Insert(at, Punctuation[random.Next(Punctuation.Length)]);
                    break;
                case 4: // truncated
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case 5: // a duplicated line
                    var start = bytes.LastIndexOf((byte)'\n', at) + 1;
                    var end = bytes.IndexOf((byte)'\n', at);
                    var line = bytes.GetRange(start, (end < 0 ? bytes.Count : end + 1) - start);
                    bytes.InsertRange(start, line);
                    break;
            }
        }

        return [.. bytes];
    }

    internal static string Printable(byte[] bytes) =>
        string.Concat(Encoding.UTF8.GetString(bytes).Select(c => c is '\n' or '\t' || (c >= ' ' && c < 0x7F) ? c.ToString() : $"\\u{(int)c:X4}"));
}
