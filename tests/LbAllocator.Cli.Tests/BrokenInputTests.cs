namespace LbAllocator.Cli.Tests;

/// <summary>
/// Issue 11: broken manifests as a user meets them, through the real lballocator process, where an exception
/// nobody catches would print its stack trace: one FILE:LINE:COLUMN: message each and exit 1.
/// </summary>
public class BrokenInputTests
{
    // The issue's file: a flow mapping left open, and the next line starting a new key.
    private const string UnclosedFlowMapping = "apiVersion: v1\nkind: Namespace\nmetadata: {name: broken, namespace: lballocator-system\nspec:\n  finalizers: [kubernetes]\n";

    [Theory]
    [InlineData("validate")]
    [InlineData("plan")]
    public void The_issues_unclosed_flow_mapping_is_one_located_message(string verb)
    {
        using var dir = new ManifestDir();
        var file = dir.Write("broken.yaml", UnclosedFlowMapping);

        var run = CliRun.OfProcess(verb, file);

        Assert.Equal(1, run.ExitCode);
        // validate lists problems on stdout; plan, whose stdout is the plan, on stderr.
        var messages = verb == "validate" ? run.Stdout : run.Stderr;
        Assert.Equal($"{file}:4:1: invalid YAML: the '{{' at 3:11 is not closed", messages.Split('\n')[0]);
        AssertNoStackTrace(run);
    }

    [Fact]
    public void Binary_garbage_is_one_located_message()
    {
        using var dir = new ManifestDir();
        var file = Path.Combine(dir.Path, "garbage.yaml");
        // Deterministic noise: valid ASCII for a line, then bytes no UTF-8 text holds.
        File.WriteAllBytes(file, [.. "apiVersion: v1\n"u8, 0x00, 0xC3, 0x28, 0xFF, 0xFE, 0x80, 0x1B]);

        var run = CliRun.OfProcess("validate", file);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"{file}:2:2: not valid UTF-8 (byte 0xC3 at offset 16)", run.Stdout.Split('\n')[0]);
        AssertNoStackTrace(run);
    }

    [Fact]
    public void A_broken_file_in_a_directory_does_not_stop_the_others()
    {
        using var dir = new ManifestDir();
        dir.Write("a-pool.yaml", ManifestDir.Pool);
        var broken = dir.Write("b-service.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: \"80\"\n");
        dir.Write("c-service.yaml", ManifestDir.Service("api"));

        var run = CliRun.OfProcess("validate", dir.Path);

        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"{broken}:5:10: Service: expected a list, found a string", run.Stdout.Split('\n')[0]);
        Assert.Contains("in 1 IPAddressPool(s), 0 L2Advertisement(s), 0 Namespace(s), 1 Service(s)", run.Stderr, StringComparison.Ordinal);
        AssertNoStackTrace(run);
    }

    [Fact]
    public void A_missing_file_is_named_without_a_stack_trace()
    {
        var run = CliRun.OfProcess("plan", "/nonexistent/lballocator.yaml");

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("/nonexistent/lballocator.yaml: no such file or directory", run.Stderr.Split('\n')[0]);
        AssertNoStackTrace(run);
    }

    private static void AssertNoStackTrace(CliRun run)
    {
        var printed = run.Stdout + run.Stderr;
        Assert.DoesNotContain("Exception", printed, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", printed, StringComparison.Ordinal);
    }
}
