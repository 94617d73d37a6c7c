using System.Diagnostics;
using System.Text.RegularExpressions;
using LbAllocator.TestApiServer;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// The README's test command as a new user types it: CI runs that very line, and on a fresh clone beside the shared
/// assets it finds the real API server from the relative path it gives (each test runs in a directory of its own, so
/// a relative path handed on as it is finds nothing there).
/// </summary>
public sealed partial class ReadmeTestCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lbt-readme-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Root => InstallManifests.RepoRoot;

    [Fact]
    public void CI_runs_the_README_test_command_word_for_word()
    {
        var command = ReadmeTestCommand();
        var ci = File.ReadAllLines(Path.Combine(Root, ".ci", "run"));
        Assert.Contains(command, ci);
    }

    [RealApiFact]
    public async Task The_README_test_command_on_a_fresh_clone_finds_the_real_api_server_from_its_relative_path()
    {
        var shared = Path.GetFullPath(Path.Combine(Root, "..", "shared"));
        Assert.True(Directory.Exists(Path.Combine(shared, "kube")), $"{shared}/kube is missing: the README's command expects the shared assets beside the checkout");
        var clone = Path.Combine(_dir, "main");
        await RunAsync(_dir, settingsOnly: false, "git", "clone", "--quiet", Root, clone);
        // What this build tests is the working tree's script and README, not only what was committed.
        File.Copy(Path.Combine(Root, "scripts", "test.sh"), Path.Combine(clone, "scripts", "test.sh"), overwrite: true);
        File.Copy(Path.Combine(Root, "README.md"), Path.Combine(clone, "README.md"), overwrite: true);
        Directory.CreateSymbolicLink(Path.Combine(_dir, "shared"), shared);

        var output = await RunAsync(clone, settingsOnly: true, "bash", "-c", ReadmeTestCommand());

        Assert.Contains($"real-API tier: kube-apiserver from {Path.Combine(_dir, "shared", "kube")}", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_KUBEBUILDER_ASSETS_that_names_no_directory_stops_the_run_with_what_it_was_relative_to()
    {
        var (code, output) = await TryRunAsync(Root, settingsOnly: true, "bash", "-c", "KUBEBUILDER_ASSETS=no/such/dir scripts/test.sh");
        Assert.Equal(2, code);
        Assert.Contains($"KUBEBUILDER_ASSETS=no/such/dir: no such directory (relative to {Root})", output, StringComparison.Ordinal);
    }

    /// <summary>The one line of the sh block under "Run the tests" in the README.</summary>
    private static string ReadmeTestCommand()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        var match = TestCommand().Match(readme);
        Assert.True(match.Success, "the README has no test command under \"Run the tests\"");
        return match.Groups[1].Value;
    }

    private static async Task<string> RunAsync(string directory, bool settingsOnly, string file, params string[] args)
    {
        var (code, output) = await TryRunAsync(directory, settingsOnly, file, args);
        Assert.True(code == 0, $"{file} {string.Join(' ', args)} exited {code}:\n{output}");
        return output;
    }

    private static async Task<(int Code, string Output)> TryRunAsync(string directory, bool settingsOnly, string file, params string[] args)
    {
        var start = new ProcessStartInfo(file, args) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        // As a new user's shell has it: no assets, CLI binary or CI flag inherited from the run that started this test.
        start.Environment.Remove(KubeApiServer.AssetsVariable);
        start.Environment.Remove("LBALLOCATOR_CLI");
        start.Environment.Remove("CI");
        if (settingsOnly)
        {
            start.Environment["LBALLOCATOR_TEST_SETTINGS_ONLY"] = "1";
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"Run the tests.*?```sh\n([^\n]+)\n```", RegexOptions.Singleline)]
    private static partial Regex TestCommand();
}
