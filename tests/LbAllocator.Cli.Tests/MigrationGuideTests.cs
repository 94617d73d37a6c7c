using System.Text.RegularExpressions;
using LbAllocator.TestApiServer;

namespace LbAllocator.Cli.Tests;

/// <summary>
/// The README's "Coming from MetalLB" steps 3, 5 and 6 on a real kube-apiserver, with the overlay text taken from the
/// README itself: the controller starts with --accept-metallb-annotations while no speaker of ours exists, and the full
/// apply adds the speakers after.
/// </summary>
public sealed partial class MigrationGuideTests(KubeApiServerFixture fixture) : IClassFixture<KubeApiServerFixture>, IDisposable
{
    private readonly ManifestDir _files = new();

    private KubeApiServer Server => fixture.Server;

    public void Dispose() => _files.Dispose();

    [RealApiFact]
    public async Task The_guide_starts_our_controller_with_MetalLB_annotations_before_any_speaker_of_ours()
    {
        var readme = await File.ReadAllTextAsync(Path.Combine(InstallManifests.RepoRoot, "README.md"));
        var overlay = Overlay().Match(readme);
        Assert.True(overlay.Success, "the README's guide has no migrate/kustomization.yaml");
        // As in the repository: migrate/ beside deploy/ and config/.
        Directory.CreateSymbolicLink(Path.Combine(_files.Path, "deploy"), Path.Combine(InstallManifests.RepoRoot, "deploy"));
        Directory.CreateSymbolicLink(Path.Combine(_files.Path, "config"), Path.Combine(InstallManifests.RepoRoot, "config"));
        var body = string.Join('\n', overlay.Groups[1].Value.Split('\n').Select(l => l.Length >= 3 ? l[3..] : l.Trim()));
        _files.Write("migrate/kustomization.yaml", body);
        var rendered = _files.Write("lballocator.yaml", await Server.KubectlMustAsync("kustomize", Path.Combine(_files.Path, "migrate")));

        // Step 3, then step 5.
        await Server.KubectlMustAsync("create", "namespace", "lballocator-system");
        await Server.KubectlMustAsync("apply", "-k", Path.Combine(InstallManifests.RepoRoot, "config", "crd"));
        await Server.KubectlMustAsync("apply", "-f", rendered, "-l", "app.kubernetes.io/component!=speaker");

        var args = await Server.KubectlMustAsync("get", "deployment", "-n", "lballocator-system", "lballocator-controller", "-o", "jsonpath={.spec.template.spec.containers[0].args}");
        Assert.Contains("--accept-metallb-annotations", args, StringComparison.Ordinal);
        Assert.Equal("", (await Server.KubectlMustAsync("get", "daemonsets", "-n", "lballocator-system", "-o", "name")).Trim());

        // Step 6: the whole file adds our speakers.
        await Server.KubectlMustAsync("apply", "-f", rendered);
        Assert.Equal("daemonset.apps/lballocator-speaker", (await Server.KubectlMustAsync("get", "daemonsets", "-n", "lballocator-system", "-o", "name")).Trim());
    }

    /// <summary>The heredoc of step 5, indented three spaces in the README's numbered list.</summary>
    [GeneratedRegex(@"cat > migrate/kustomization.yaml <<'EOF'\n(.*?)\n   EOF", RegexOptions.Singleline)]
    private static partial Regex Overlay();
}
